"""Registries are plain dicts; this is their one lookup, with errors that list the choices, and
their one check of a builder's keyword options."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from fcnseg.errors import FcnsegError

T = TypeVar("T")


def suggest(name: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the nearest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """table[name], or an error naming the choices and the nearest one."""
    if name in table:
        return table[name]
    choices = ", ".join(sorted(table))
    raise FcnsegError(f"unknown {kind} '{name}'.{suggest(name, table)} Choices: {choices}.")


def check_options(given: Iterable[str], accepted: Iterable[str], owner: str) -> None:
    """Raise for the first of `given` not in `accepted`, naming the nearest and all of them.

    `owner` says whose options they are, e.g. "model 'unet'". Checked before the builder is
    called, so that a misspelt option is named as such instead of surfacing as a TypeError.
    """
    accepted = list(accepted)
    for option in given:
        if option not in accepted:
            raise FcnsegError(
                f"{owner} has no option '{option}'.{suggest(option, accepted)} "
                f"Its options: {', '.join(accepted) or 'none'}."
            )
