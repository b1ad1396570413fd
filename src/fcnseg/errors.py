"""The one exception type for problems a user can fix (bad data, bad config, wrong path).

The CLI prints its message as a single sentence, without a traceback, and exits non-zero.
Programming errors stay ordinary exceptions, so that they keep their tracebacks.
"""


class FcnsegError(Exception):
    """Something in the user's input is wrong; the message says what was found and how to fix it."""
