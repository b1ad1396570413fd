"""docs/config.md: generated from the config dataclasses, their comments and the registries, and
kept current (the first test fails when it is stale and says how to regenerate it)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from fcnseg import config_reference
from fcnseg.config import CRF_RULES, VALUE_RULES, Config
from fcnseg.config_reference import REGENERATE, field_comments, render, sections, type_name
from fcnseg.losses import LOSSES
from fcnseg.models import list_models

CHECKOUT = Path(__file__).resolve().parents[1]
PAGE = CHECKOUT / "docs" / "config.md"


def test_docs_config_md_is_current():
    written = PAGE.read_text() if PAGE.is_file() else ""
    fresh = render()
    if written != fresh:
        diff = difflib.unified_diff(
            written.splitlines(), fresh.splitlines(), "docs/config.md", "render()", lineterm=""
        )
        shown = "\n".join(list(diff)[:30])
        pytest.fail(f"docs/config.md is stale; regenerate it with `{REGENERATE}`:\n{shown}")


def test_every_config_field_has_a_comment():
    """A new field needs its comment in config.py: that comment is its documentation."""
    missing = [key.path for _, _, keys in sections() for key in keys if not key.comment]
    assert missing == [], f"add a comment above or beside these fields in config.py: {missing}"


@dataclass
class Commented:
    # Two lines above
    # belong to the field below them.
    first: int = 1  # and so does this one
    second: str = "b"  # beside only
    third: list[int] = field(
        default_factory=list  # a comment inside a field spanning lines counts
    )
    fourth: float = 0.5

    # a blank line above a comment still leaves it to the next field
    fifth: bool = True


def test_comments_above_and_beside_a_field_are_its_own():
    assert field_comments(Commented) == {
        "first": "Two lines above belong to the field below them. and so does this one",
        "second": "beside only",
        "third": "a comment inside a field spanning lines counts",
        "fourth": "",
        "fifth": "a blank line above a comment still leaves it to the next field",
    }


def rows() -> dict[str, config_reference.Key]:
    return {key.path: key for _, _, keys in sections() for key in keys}


def test_rows_carry_types_defaults_and_the_rules_of_config_py():
    found = rows()
    layout = found["data.layout"]
    hint = typing.get_type_hints(type(Config().data))["layout"]
    assert layout.accepted == ", ".join(f"`{value}`" for value in typing.get_args(hint))
    alpha = found["data.image_alpha"]
    assert (alpha.type, alpha.default, alpha.accepted) == ("string", "drop", "`drop`, `keep`")
    assert alpha.comment == "RGBA images: drop the alpha channel or keep it"
    assert found["data.batch_size"].accepted == VALUE_RULES["data.batch_size"][1] == "a number >= 1"
    assert found["inference.crf.window"].accepted == CRF_RULES["window"][1]
    assert found["inference.crf.window"].default == "11"
    assert found["inference.crf"].default == "null" and found["data"].default == ""
    assert found["data.mean"].default == "[0.485, 0.456, 0.406]"
    assert found["data.crop_size"].type == "[int, int] or null"
    assert found["loss.terms"].default == "[{name: cross_entropy, weight: 1.0, options: {}}]"
    assert found["loss.class_weights"].accepted == (
        "a list of numbers, one per class, or `median_frequency`, `sqrt_median_frequency`"
    )
    assert found["model.name"].accepted.startswith("`danet`, `deeplabv3`, ")


def all_paths(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key, walked here independently of the generator."""
    paths = []
    for item in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[item.name]
        paths.append(prefix + item.name)
        inner = [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)]
        if inner:
            plural = "[]" if typing.get_origin(hint) is list else ""
            paths += all_paths(inner[0], f"{prefix}{item.name}{plural}.")
    return paths


def test_the_page_lists_every_key_loss_and_model():
    page = render()
    listed = [line.split("`")[1] for line in page.splitlines() if line.startswith("| `")]
    assert sorted(path for path in listed if path in set(all_paths())) == sorted(all_paths())
    assert [name for name in listed if name in LOSSES] == list(LOSSES)
    assert [name for name in listed if name in list_models()] == list_models()
    dice = next(line for line in page.splitlines() if line.startswith("| `dice` |"))
    assert dice == (
        "| `dice` | `smooth`: `1.0` | yes | Soft Dice: 1 - (2 TP + s) / (2 TP + FP + FN + s) "
        "per class, averaged over classes. |"
    )
    assert "&lt;root&gt;/&lt;split&gt;/images" in page  # a bare <root> would vanish as HTML


def test_type_names_read_as_yaml():
    assert type_name(int | None) == "int or null"
    assert type_name(tuple[float, ...]) == "list of number"
    assert type_name(Literal["a", "b"]) == "string"
    assert type_name(dict[str, int]) == "mapping"


def test_importing_prints_nothing_and_running_prints_the_page(capsys: pytest.CaptureFixture):
    importlib.reload(config_reference)
    assert capsys.readouterr().out == ""
    command = [sys.executable, "-m", "fcnseg.config_reference"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True, cwd=CHECKOUT)
    assert printed.stdout == render()
