"""MkDocs hooks of the documentation site (mkdocs.yml `hooks:`; excluded from the site itself).

Two things the Markdown alone cannot do, both at build time and offline:

- `<!-- fcnseg-help: COMMAND -->` on a line of its own becomes the output of `fcnseg COMMAND
  --help`, taken from fcnseg.cli's parser (cheap: it imports neither torch nor numpy), so a
  command's page always shows the options the installed code has. A command the parser does
  not know is a warning, which `mkdocs build --strict` turns into a failure.
- Docstrings rendered by mkdocstrings write placeholders such as `<root>/<split>/images` in
  prose; Markdown would pass them on as unknown HTML elements, which browsers hide. A bare
  `<word>` that no `</word>` closes and that is no void element (`<br>`) is escaped back into
  text.
- A link from a page to a file of the repository outside docs/ (`../src/fcnseg/configs/x.yaml`,
  written so that it works when the Markdown is read on a code host) becomes the path as
  code, since the site does not hold those files; the file must exist, or the build warns
  (and fails in strict mode) as for any broken link.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.hooks.fcnseg")

HELP_MARKER = re.compile(r"^<!-- fcnseg-help: ([a-z-]+) -->$", re.MULTILINE)
HELP_WIDTH = "90"  # columns argparse wraps at: the same text on every machine
# [text](target) where target climbs out of docs/ (one "../" per folder level and one more).
LINK = re.compile(r"\[(?P<text>[^\]\n]+)\]\((?P<target>(?:\.\./)+[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def command_help(command: str) -> str | None:
    """`fcnseg COMMAND --help` as printed at HELP_WIDTH columns, or None for an unknown command."""
    from fcnseg.cli import HANDLERS, build_parser

    if command not in HANDLERS:  # every command the parser knows has its handler there
        return None
    parser = build_parser()
    output = io.StringIO()
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
            parser.parse_args([command, "--help"])
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return output.getvalue().rstrip()


BARE_TAG = re.compile(r"<([a-z][a-z0-9_]*)>")
VOID_ELEMENTS = {"br", "hr", "wbr", "img", "input", "col", "area", "base", "link", "meta", "source"}


def escape_placeholders(html: str) -> str:
    """`<root>` -> `&lt;root&gt;` where it cannot be an element (see the module docstring)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in VOID_ELEMENTS or f"</{name}>" in html:
            return match.group(0)
        return f"&lt;{name}&gt;"

    return BARE_TAG.sub(replace, html)


def _insert_help(markdown: str, page_path: str) -> str:
    def replace(match: re.Match[str]) -> str:
        command = match.group(1)
        text = command_help(command)
        if text is None:
            log.warning(
                "%s asks for the help of 'fcnseg %s', which has no such command", page_path, command
            )
            return match.group(0)
        return f"```text\n{text}\n```"

    return HELP_MARKER.sub(replace, markdown)


def _unlink_repository_files(markdown: str, page_path: str, docs_dir: Path) -> str:
    """Links that leave docs/ -> the repository path as code (checked to exist)."""
    page_folder = posixpath.dirname(page_path)
    # normpath, not resolve: a repository folder that is a symbolic link stays inside it.
    docs_dir = Path(os.path.normpath(docs_dir.absolute()))
    repository = docs_dir.parent

    def replace(match: re.Match[str]) -> str:
        target = match.group("target")
        resolved = Path(os.path.normpath(docs_dir / page_folder / target))
        if docs_dir in resolved.parents:
            return match.group(0)  # a page of the site: MkDocs checks it
        if repository not in resolved.parents or not resolved.exists():
            log.warning("%s links to %s, which is not a file of the repository", page_path, target)
            return match.group(0)
        path = resolved.relative_to(repository).as_posix()
        text = match.group("text")
        return f"`{path}`" if text.strip("`") == path else f"{text} (`{path}`)"

    return LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    page_path = page.file.src_uri
    markdown = _insert_help(markdown, page_path)
    return _unlink_repository_files(markdown, page_path, Path(config["docs_dir"]))


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    return escape_placeholders(html)
