"""Writing without losing anything a user has.

    folders.py      run folders: created fresh and marked, replaced only with --overwrite and
                    only when fcnseg made them and nothing in them is being read; names that
                    stay inside output_dir
    locks.py        one writer per run folder: a lock file with pid and host, stale locks
                    detected and taken over
    atomic.py       files written under a hidden partial name, then renamed into place
    interrupts.py   SIGTERM handled like Ctrl-C; steps that finish before a stop takes effect

This package imports nothing of fcnseg but errors: every layer may write through it.
"""
