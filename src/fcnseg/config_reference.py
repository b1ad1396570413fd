"""The configuration reference, docs/config.md, generated from the source so that it cannot drift:

    .venv/bin/python -m fcnseg.config_reference > docs/config.md

Every key of the config dataclasses (fcnseg.config) with its dotted path, type, default, the
values it accepts (Literal types, VALUE_RULES, CRF_RULES and the registries of names) and the
comment written above or beside the field in config.py; then the registered losses and models
with their options. tests/test_config_reference.py fails when docs/config.md differs from
`render()`. Importing this module does nothing; running it prints the page.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from fcnseg.config import CRF_RULES, VALUE_RULES, Config, CRFParameters
from fcnseg.losses import LOSSES
from fcnseg.losses.class_weights import WEIGHTINGS
from fcnseg.models import all_models, list_models, model_options, task_of

REGENERATE = ".venv/bin/python -m fcnseg.config_reference > docs/config.md"
# Keys whose accepted values are the names of a registry rather than a rule in config.py.
REGISTERED: dict[str, Callable[[], str]] = {
    "model.name": lambda: _names(list_models()) + " (see [Models](#models))",
    "loss.terms[].name": lambda: _names(LOSSES) + " (see [Losses](#losses))",
    "loss.class_weights": lambda: "a list of numbers, one per class, or " + _names(WEIGHTINGS),
}
# Options the loss builder fills in itself: from data.ignore_index and loss.class_weights.
FILLED_IN = ("ignore_index", "class_weights")


@dataclass(frozen=True)
class Key:
    """One row of a section's table."""

    path: str  # data.root, loss.terms[].name
    type: str
    default: str
    accepted: str
    comment: str


def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in the source of dataclass `cls`: the comment lines directly above
    it, then the one beside it (a field without either gets "")."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whether alone on its line)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            alone = token.line.lstrip().startswith("#")
            comments[token.start[0]] = (token.string.lstrip("#").strip(), alone)
    found = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, line = [], node.lineno - 1
        while line in comments and comments[line][1]:
            above.insert(0, comments[line][0])
            line -= 1
        lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        beside = [comments[n][0] for n in lines if n in comments and not comments[n][1]]
        found[node.target.id] = " ".join(above + beside)
    return found


def type_name(hint: Any) -> str:
    """A type hint in YAML's words: `str | None` -> "string or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in args)
    if origin is Literal:
        return " or ".join(sorted({type_name(type(arg)) for arg in args}))
    if origin is list and dataclasses.is_dataclass(args[0]):
        return "list of sections"
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return f"[{', '.join(type_name(arg) for arg in args)}]"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(hint):
        return "section"
    names = {type(None): "null", str: "string", int: "int", float: "number", bool: "bool"}
    return names.get(hint, "any" if hint is Any else getattr(hint, "__name__", str(hint)))


def yaml_value(value: Any) -> str:
    """A default as it would be written in YAML's flow style."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return f"[{', '.join(yaml_value(item) for item in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.items()) + "}"
    return repr(value) if isinstance(value, str) and value in ("", "null") else str(value)


def _names(names: typing.Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


def _default(item: dataclasses.Field) -> Any:
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def _section_type(hint: Any) -> type | None:
    """The dataclass a field opens as a section (also `X | None` and `list[X]`), or None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType, list):
        inner = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
        return inner[0] if inner else None
    return hint if dataclasses.is_dataclass(hint) else None


def _accepted(path: str, name: str, hint: Any, owner: type) -> str:
    if path in REGISTERED:
        return REGISTERED[path]()
    if path in VALUE_RULES:
        return VALUE_RULES[path][1]
    if owner is CRFParameters and name in CRF_RULES:
        return CRF_RULES[name][1]
    literals = [arg for arg in (hint, *typing.get_args(hint)) if typing.get_origin(arg) is Literal]
    return _names(str(value) for arg in literals for value in typing.get_args(arg))


def sections(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, type, list[Key]]]:
    """(dotted prefix, dataclass, its keys) for `cls` and every section below it, in order."""
    hints, comments = typing.get_type_hints(cls), field_comments(cls)
    keys, below = [], []
    for item in dataclasses.fields(cls):
        path, hint, default = f"{prefix}{item.name}", hints[item.name], _default(item)
        inner, is_list = _section_type(hint), typing.get_origin(hint) is list
        comment = comments[item.name]
        if inner is not None:
            child = f"{path}[]" if is_list else path
            below.append((f"{child}.", inner))
            comment = f"{comment.rstrip('.')}. " if comment else ""
            comment += f"Its keys: [{child}](#{slug(heading(child, inner))})."
        # A section made by default shows its keys' defaults instead; null and lists show here.
        opened = inner is not None and not is_list and default is not None
        shown = "" if opened else yaml_value(default)
        accepted = _accepted(path, item.name, hint, cls)
        keys.append(Key(path, type_name(hint), shown, accepted, comment.strip()))
    yield prefix.rstrip("."), cls, keys
    for child_prefix, child in below:
        yield from sections(child, child_prefix)


def heading(prefix: str, cls: type) -> str:
    return f"`{prefix}` ({cls.__name__})" if prefix else f"Top level ({cls.__name__})"


def slug(text: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def cell(text: str) -> str:
    """Text for a table cell: pipes escaped; < and > outside code spans as entities (a bare
    <root> would be taken for an HTML tag and vanish)."""
    parts = text.replace("|", "\\|").split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def key_table(keys: list[Key]) -> list[str]:
    rows = ["| key | type | default | accepted | what it is |", "|---|---|---|---|---|"]
    for key in keys:
        values = (_code(key.path), key.type, _code(key.default), key.accepted, key.comment)
        rows.append("| " + " | ".join(cell(value) for value in values) + " |")
    return rows


def summary(thing: Any) -> str:
    """The first paragraph of a thing's own docstring (a class's, not inherited), else of its
    module's, on one line."""
    doc = thing.__dict__.get("__doc__") if isinstance(thing, type) else thing.__doc__
    doc = doc or sys.modules[thing.__module__].__doc__ or ""
    return " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())


def _options(options: dict[str, Any]) -> str:
    return ", ".join(f"`{name}`: `{yaml_value(value)}`" for name, value in options.items())


def loss_table() -> list[str]:
    rows = ["| name | options (default) | class weights | what it is |", "|---|---|---|---|"]
    for name, maker in LOSSES.items():
        parameters = inspect.signature(maker).parameters
        options = {key: p.default for key, p in parameters.items() if key not in FILLED_IN}
        weighs = "yes" if "class_weights" in parameters else "no"
        values = (_code(name), _options(options) or "none", weighs, summary(maker))
        rows.append("| " + " | ".join(cell(value) for value in values) + " |")
    return rows


def model_table() -> list[str]:
    rows = ["| name | task | options (default) | what it is |", "|---|---|---|---|"]
    for name in list_models():
        builder = all_models()[name]
        values = (_code(name), task_of(name), _options(model_options(name)), summary(builder))
        rows.append("| " + " | ".join(cell(value) for value in values) + " |")
    return rows


INTRODUCTION = f"""\
# Configuration reference

<!-- Generated from src/fcnseg/config.py, fcnseg.losses and fcnseg.models: edit those, not
this file, then run `{REGENERATE}`
(tests/test_config_reference.py fails while this file is stale). -->

A run's config is a YAML file of the sections below; every key may be left out, and then its
default applies. `--set key=value` changes one key from the command line (`--set train.lr=0.01`,
`--set 'loss.terms=[{{name: dice}}]'`). The config is checked as it is loaded, before any data
is read: an unknown key is refused with the nearest valid name, and so is a value of the wrong
type or outside "accepted" (`null` where the type says "or null"); the names of models and
losses are checked by their registries as the run starts. The packaged recipes (`fcnseg train
camvid`) are in [src/fcnseg/configs](../src/fcnseg/configs).
"""

LOSSES_TEXT = """\
## Losses

`loss.terms` is a list of `{name, weight, options}`: the loss is the sum of each term's loss
times its weight, and `options` are the term's own keyword options below. Every loss ignores
the pixels labelled `data.ignore_index`; those marked "class weights" take `loss.class_weights`.
"""

MODELS_TEXT = """\
## Models

`model.options` are the model's keyword options below. Every semantic model also takes `crf`:
null (none), `true` or CRF settings as in [inference.crf](#inferencecrf-crfparameters), a
trainable dense CRF at its end (CRF-as-RNN). Papers, backbones and sizes:
[models.md](models.md).
"""


def render() -> str:
    """docs/config.md, whole."""
    lines = [INTRODUCTION]
    for prefix, cls, keys in sections():
        lines += [f"## {heading(prefix, cls)}", ""]
        if cls.__dict__.get("__doc__") and not cls.__doc__.startswith(f"{cls.__name__}("):
            lines += [summary(cls), ""]
        lines += [*key_table(keys), ""]
    lines += [LOSSES_TEXT, *loss_table(), "", MODELS_TEXT, *model_table()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
