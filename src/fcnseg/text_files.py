"""Reading the text a user wrote (configs, class tables, split lists, labelmaps) without surprises.

Every such file enters through `read_text` or `load_yaml`, which turn each way a file can be wrong
into an FcnsegError that names the file, what was found and what is accepted:

- a missing file, a folder, a file larger than MAX_TEXT_BYTES (a config or class table is a few
  kilobytes; a gigabyte is a mistake or an attack, and would be read whole into memory);
- bytes that are not UTF-8 (a list saved as UTF-16 by a Windows editor, or a binary file);
- YAML that is not YAML, nested deeper than MAX_YAML_DEPTH (PyYAML recurses: a deep file ends in
  RecursionError), or whose aliases expand past MAX_YAML_NODES ("billion laughs": nine lines of
  anchors that expand to 10^9 nodes, which exhaust memory once anything walks them).

Only `errors` is imported: configuration, the data layer and the commands all read through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fcnseg.errors import FcnsegError

MAX_TEXT_BYTES = 16 * 2**20
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 100_000  # after aliases are expanded; the largest shipped recipe has about 200


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of `path` (a BOM is dropped), or an FcnsegError saying why it cannot be.

    `what` names the file in the message: "config file", "class table", "split list".
    """
    path = Path(path)
    if not path.is_file():
        found = "a folder" if path.is_dir() else "nothing"
        raise FcnsegError(
            f"{what} {path} is not a file ({found} is there); give the path of a text file."
        )
    size = path.stat().st_size
    if size > MAX_TEXT_BYTES:
        raise FcnsegError(
            f"{what} {path} is {size / 2**20:.0f} MB; a {what} is text of at most "
            f"{MAX_TEXT_BYTES // 2**20} MB. Check that this is the file you meant."
        )
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FcnsegError(
            f"{what} {path} is not UTF-8 text (byte {error.start} is "
            f"{error.object[error.start]:#04x}); save it as UTF-8 (in most editors: Save as... > "
            "Encoding: UTF-8)."
        ) from None
    except OSError as error:
        raise FcnsegError(f"cannot read {what} {path}: {error.strerror}.") from None


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (plain data only), refusing alias bombs and deep nesting before anything
    walks the result. `source` names where the text came from, for the messages."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # it reads the text here: it can refuse a character
        node = _compose(loader, source)
        if node is None:
            return None
        _check_size(node, source)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise FcnsegError(f"{source} is not valid YAML: {_one_line(error)}.") from None
    except RecursionError:
        raise FcnsegError(
            f"{source} is nested too deeply to read; a config is a few levels deep."
        ) from None
    finally:
        if loader is not None:
            loader.dispose()


def _one_line(error: yaml.YAMLError) -> str:
    """PyYAML's message, which spans several lines with a drawing of the spot, as one line."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _compose(loader: yaml.SafeLoader, source: str) -> yaml.Node | None:
    """The single document's node graph (no Python objects yet), or an error if more than one."""
    if not loader.check_node():
        return None
    node = loader.get_node()
    if loader.check_node():
        raise FcnsegError(f"{source} holds several YAML documents (---); keep one.")
    return node


def _check_size(root: yaml.Node, source: str) -> None:
    """Refuse a graph deeper than MAX_YAML_DEPTH or larger than MAX_YAML_NODES once expanded.

    An alias is a second reference to a node already composed, so the graph is small while its
    expansion can be exponential: the expanded size of each node is counted once (memoised by
    identity), in time linear in the graph. Depth is measured on the graph, iteratively.
    """
    expanded: dict[int, int] = {}
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise FcnsegError(
                f"{source} is nested more than {MAX_YAML_DEPTH} levels deep; a config is a few "
                "levels deep. Check its indentation and brackets."
            )
        children = _children(node)
        if children_done or not children:
            expanded[id(node)] = 1 + sum(expanded[id(child)] for child in children)
            if expanded[id(node)] > MAX_YAML_NODES:
                raise FcnsegError(
                    f"{source} expands to more than {MAX_YAML_NODES:,} values through its "
                    "aliases (*name): a YAML alias bomb, or a file much larger than any config. "
                    "Write the values out instead of nesting aliases."
                )
            continue
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in expanded)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []
