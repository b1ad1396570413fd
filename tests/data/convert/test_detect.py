"""`fcnseg inspect` and `train` on an export that was not converted: the tool and the exact
`fcnseg convert` command are named, instead of reading CVAT's colours through VOC's palette."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcnseg.cli import main
from fcnseg.data.layouts import resolve_layout
from fcnseg.errors import FcnsegError
from tests.data.convert.exports import (
    cvat_files,
    write_folder,
    write_images,
    write_json,
    write_zip,
)

COCO = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
LABEL_STUDIO = [{"id": 1, "data": {"image": "/data/upload/1/a.png"}, "annotations": []}]


def test_cvat_export_with_images_is_no_longer_read_as_voc(tmp_path: Path):
    export = write_folder(tmp_path / "export", cvat_files(with_images=True))
    command = f"fcnseg convert cvat {export} --out {tmp_path / 'export-fcnseg'}"
    with pytest.raises(FcnsegError, match=r"CVAT 'Segmentation mask 1\.1' export") as error:
        resolve_layout(export)
    assert command in str(error.value)
    (export / "classes.txt").write_text("0 background\n1 cat 250,50,83\n2 dog 51,221,255\n")
    assert resolve_layout(export).name == "voc"  # set up by hand: read as it is asked
    (export / "classes.txt").unlink()
    assert resolve_layout(export, "voc").name == "voc"  # a layout named explicitly


def test_cvat_zip_without_images_names_the_images_option(tmp_path: Path):
    export = write_zip(tmp_path / "export.zip", cvat_files(with_images=False))
    with pytest.raises(FcnsegError, match=r"convert cvat .*export.zip --images IMAGES_DIR --out"):
        resolve_layout(export)


@pytest.mark.parametrize(
    ("place", "data", "tool"),
    [
        ("annotations/instances_default.json", COCO, "coco"),
        ("export.json", LABEL_STUDIO, "label-studio"),
    ],
)
def test_json_exports_in_a_folder_or_given_as_the_folder(
    tmp_path: Path, place: str, data: object, tool: str
):
    path = write_json(tmp_path / "set" / place, data)
    write_images(tmp_path / "set" / "images", ["a.png"])
    with pytest.raises(FcnsegError, match=f"holds {path}, .*fcnseg convert {tool} {path}"):
        resolve_layout(tmp_path / "set")
    with pytest.raises(FcnsegError, match=f"{path} is .*fcnseg convert {tool} {path}"):
        resolve_layout(path)


def test_inspect_and_train_name_the_command(tmp_path: Path, capsys: pytest.CaptureFixture):
    export = write_folder(tmp_path / "export", cvat_files(with_images=True))
    assert main(["inspect", str(export), "--out", str(tmp_path / "inspect")]) == 2
    assert "fcnseg convert cvat" in capsys.readouterr().err
    config = tmp_path / "run.yaml"
    config.write_text(f"data:\n  kind: folder\n  root: {export}\n  num_classes: 3\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    assert "fcnseg convert cvat" in capsys.readouterr().err


def test_convert_command_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    export = write_zip(tmp_path / "export.zip", cvat_files())
    out = tmp_path / "data"
    assert main(["convert", "cvat", str(export), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verdict  ready to train" in printed and f'root: "{out}"' in printed
    assert main(["convert", "cvat", str(export), "--out", str(out)]) == 2  # never clobbered
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "cvat", str(export), "--out", str(out), "--overwrite"]) == 0
    assert main(["convert", "cvta", str(export), "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'cvat'?" in capsys.readouterr().err
