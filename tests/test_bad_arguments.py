"""Every command, run with a table of bad arguments, configs, files and data, must end the way a
user's mistake ends: exit status 2, one line on stderr that says what is wrong, no traceback, and
nothing in the user's folders changed or added.

The table is built from a few kinds of mistake, each applied to every command that takes it
(inference flags to evaluate and predict, configs to train, inspect and demo, checkpoints to
evaluate, predict, export and train --resume, ...). It runs in-process through fcnseg.cli.main,
each case under an alarm, so that a hang fails its case instead of the suite.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fcnseg.cli import main
from tests.conftest import write_pair
from tests.tiny_runs import write_checkpoint

CASE_SECONDS = 30  # a case that takes longer is a hang


# --- the table ---------------------------------------------------------------------------------

INFERENCE_FLAGS = {  # flag: bad values (each its own case)
    "--tile-size": ["0", "-5", "abc", "1.5", "nan"],
    "--overlap": ["1", "-0.1", "nan", "inf", "2", "x"],
    "--scales": ["nan", "0", "-1", "inf", "abc", "1 nan"],
    "--memory-budget": ["0", "-1", "nan", "-inf"],
    "--mode": ["bogus", ""],
    "--blend": ["cubic"],
    "--precision": ["fp16", "int8"],
    "--crf-set": [
        "bogus=1",
        "window=4",
        "window=0",
        "iterations=-1",
        "iterations=nan",
        "appearance_weight=abc",
        "noequals",
        "dilation=0",
        "smoothness_sigma=0",
        "appearance_weight=[1, 2]",
        "=3",
    ],
}

# `--set` overrides that no run can use: a typo'd key, values of the wrong type or range.
BAD_OVERRIDES = [
    "data.num_classes=0",
    "data.num_classes=-3",
    "data.num_classes=abc",
    "data.num_classes=nan",
    "data.num_classes=[1, 2]",
    "data.batch_size=0",
    "data.batch_size=2.5",
    "data.num_workers=-1",
    "data.crop_size=[0, 10]",
    "data.crop_size=12",
    "data.crop_size=[10]",
    "data.crop_size=[a, b]",
    "data.mean=[0.5, 0.5]",
    "data.std=[0, 1, 1]",
    "data.std=abc",
    "data.scale_range=[2, 1]",
    "data.scale_range=[0, 1]",
    "data.inference_scale=0",
    "data.inference_scale=-1",
    "data.train_scale=inf",
    "data.image_bit_depth=0",
    "data.image_bit_depth=64",
    "data.image_mode=CMYK",
    "data.kind=database",
    "data.layout=pyramid",
    "data.augment=everything",
    "data.mask_encoding=morse",
    "data.ignore_index=1",
    "data.bogus=1",
    "data=3",
    "model.name=resnet9000",
    "model.options=[1, 2]",
    "model.options.base_width=-4",
    "model.options.bogus=1",
    "loss.terms=cross_entropy",
    "loss.terms=[{name: focal_los}]",
    "loss.terms=[{name: cross_entropy, weight: -1}]",
    "loss.terms=[{name: cross_entropy, bogus: 1}]",
    "loss.class_weights=sometimes",
    "train.epochs=0",
    "train.epochs=-1",
    "train.epochs=1e99",
    "train.lr=0",
    "train.lr=-0.1",
    "train.lr=nan",
    "train.lr=inf",
    "train.lr=fast",
    "train.max_minutes=0",
    "train.max_minutes=-5",
    "train.momentum=1",
    "train.weight_decay=-1",
    "train.warmup_fraction=1.5",
    "train.grad_clip=0",
    "train.threads=0",
    "train.optimizer=adamax2",
    "train.schedule=sometimes",
    "train.precision=fp8",
    "train.device=tpu",
    "train.early_stopping_patience=0",
    "train.val_images=0",
    "train.bogus=1",
    "bogus.key=1",
    "name=",
    "task=panoptic",
    "inference.crf.window=4",
    "inference.crf=3",
    "no_equals_sign",
    "=1",
    "train..lr=1",
]

# Config files that cannot be read, written by `workspace` under these names.
BAD_CONFIG_FILES = [
    "missing.yaml",
    "folder.yaml",
    "bomb.yaml",
    "deep.yaml",
    "list.yaml",
    "scalar.yaml",
    "utf16.yaml",
    "binary.yaml",
    "invalid.yaml",
    "two_documents.yaml",
    "unknown_key.yaml",
    "bad_value.yaml",
    "recursive.yaml",
]

# Checkpoints that cannot be used, written by `workspace`.
BAD_CHECKPOINTS = [
    "missing.pt",
    "folder.pt",
    "empty.pt",
    "text.pt",
    "random.pt",
    "truncated.pt",
    "pickle_list.pt",
    "no_marker.pt",
    "no_model.pt",
    "no_state_dict.pt",
    "no_config.pt",
    "model_is_list.pt",
    "model_name_int.pt",
    "model_unknown_name.pt",
    "num_classes_str.pt",
    "options_bad.pt",
    "short_class_names.pt",
    "class_names_str.pt",
    "palette_short.pt",
    "palette_bad.pt",
    "state_dict_list.pt",
    "state_dict_wrong_shape.pt",
    "config_list.pt",
    "config_bad_value.pt",
    "config_unknown_key.pt",
]

# Data folders that cannot be used, written by `workspace`.
BAD_DATA = [
    "missing_data",
    "empty_data",
    "file_not_folder",
    "utf16_classes",
    "binary_classes",
    "huge_index_classes",
    "negative_index_classes",
    "bad_colour_classes",
    "utf16_split_list",
    "empty_split_list",
    "masks_missing",
    "mask_size_mismatch",
]


# Data that `fcnseg inspect` reads and reports on (its findings, exit status 1), not refuses.
DOCTOR_FINDINGS = {"masks_missing", "mask_size_mismatch"}


def build_cases() -> list[tuple[str, list[str]]]:
    """(id, argv) pairs; {name} in an argument is a path from the workspace."""
    cases: list[tuple[str, list[str]]] = []
    inference_commands = {
        "evaluate": ["evaluate", "{checkpoint}", "--data", "{data}", "--out", "{new}"],
        "predict": ["predict", "{checkpoint}", "{images}", "--out", "{new}"],
    }
    for command, base in inference_commands.items():
        for flag, values in INFERENCE_FLAGS.items():
            for value in values:
                cases.append((f"{command} {flag} {value!r}", [*base, flag, *value.split(" ")]))
    for override in BAD_OVERRIDES:
        cases.append(
            (f"train --set {override}", ["train", "{config}", "--out", "{new}", "--set", override])
        )
        if not override.startswith(("model.", "loss.")):  # inspect builds no model, no loss
            cases.append((f"inspect --set {override}", ["inspect", "{data}", "--set", override]))
    for override in BAD_OVERRIDES[::3]:  # the demo takes the same overrides: a sample
        cases.append((f"demo --set {override}", ["demo", "--out", "{new}", "--set", override]))
    for name in BAD_CONFIG_FILES:
        config = "{bad}/" + name
        cases.append((f"train {name}", ["train", config, "--out", "{new}"]))
        cases.append((f"inspect --config {name}", ["inspect", "{data}", "--config", config]))
    for name in BAD_CHECKPOINTS:
        checkpoint = "{bad}/" + name
        cases += [
            (f"evaluate {name}", ["evaluate", checkpoint, "--data", "{data}", "--out", "{new}"]),
            (f"predict {name}", ["predict", checkpoint, "{images}", "--out", "{new}"]),
            (f"export {name}", ["export", checkpoint, "--out", "{new}/model.onnx"]),
        ]
    for name in BAD_DATA:
        root = "{bad}/" + name
        cases += [
            (f"evaluate on {name}", ["evaluate", "{checkpoint}", "--data", root, "--out", "{new}"]),
            *[(f"inspect {name}", ["inspect", root])] * (name not in DOCTOR_FINDINGS),
            (
                f"train on {name}",
                ["train", "{config}", "--out", "{new}", "--set", f"data.root={root}"],
            ),
        ]
    cases += [
        ("no command", []),
        ("unknown command", ["trian"]),
        ("train without config", ["train"]),
        ("train recipe typo", ["train", "dmeo", "--out", "{new}"]),
        ("train resume missing", ["train", "--resume", "{bad}/missing_run"]),
        ("train resume empty folder", ["train", "--resume", "{bad}/empty_data"]),
        ("train resume and config", ["train", "{config}", "--resume", "{bad}/empty_data"]),
        ("evaluate without --data", ["evaluate", "{checkpoint}"]),
        (
            "evaluate unknown split",
            ["evaluate", "{checkpoint}", "--data", "{data}", "--split", "tset", "--out", "{new}"],
        ),
        (
            "evaluate out is a file",
            ["evaluate", "{checkpoint}", "--data", "{data}", "--out", "{config}"],
        ),
        ("predict without --out", ["predict", "{checkpoint}", "{images}"]),
        ("predict missing input", ["predict", "{checkpoint}", "{bad}/nothing", "--out", "{new}"]),
        ("predict empty folder", ["predict", "{checkpoint}", "{bad}/empty_data", "--out", "{new}"]),
        ("predict out holds inputs", ["predict", "{checkpoint}", "{images}", "--out", "{images}"]),
        (
            "predict backend typo",
            ["predict", "{checkpoint}", "{images}", "--out", "{new}", "--backend", "tensorrt"],
        ),
        (
            "predict onnx missing",
            [
                "predict",
                "{checkpoint}",
                "{images}",
                "--out",
                "{new}",
                "--backend",
                "onnx",
                "--onnx",
                "{bad}/missing.onnx",
            ],
        ),
        (
            "predict a corrupt onnx",
            [
                "predict",
                "{checkpoint}",
                "{images}",
                "--out",
                "{new}",
                "--backend",
                "onnx",
                "--onnx",
                "{bad}/garbage.onnx",
            ],
        ),
        (
            "predict with a corrupt onnx model",
            ["predict", "{bad}/garbage.onnx", "{images}", "--out", "{new}"],
        ),
        (
            "evaluate a corrupt onnx model",
            ["evaluate", "{bad}/garbage.onnx", "--data", "{data}", "--out", "{new}"],
        ),
        (
            "evaluate an onnx without metadata",
            ["evaluate", "{bad}/bare.onnx", "--data", "{data}", "--out", "{new}"],
        ),
        (
            "export int8 without calibrate",
            ["export", "{checkpoint}", "--out", "{new}/m.onnx", "--int8"],
        ),
        (
            "export calibrate missing",
            [
                "export",
                "{checkpoint}",
                "--out",
                "{new}/m.onnx",
                "--int8",
                "--calibrate",
                "{bad}/nothing",
            ],
        ),
        (
            "export calibrate empty",
            [
                "export",
                "{checkpoint}",
                "--out",
                "{new}/m.onnx",
                "--int8",
                "--calibrate",
                "{bad}/empty_data",
            ],
        ),
        ("export over the config", ["export", "{checkpoint}", "--out", "{config}"]),
        ("inspect missing", ["inspect", "{bad}/nothing"]),
        ("inspect a file", ["inspect", "{config}"]),
        ("demo task typo", ["demo", "--task", "panoptic"]),
        ("models extra argument", ["models", "unet"]),
    ]
    return cases


CASES = build_cases()


def test_the_table_is_large_enough():
    assert len(CASES) >= 300, len(CASES)
    assert len({identifier for identifier, _ in CASES}) == len(CASES)  # ids name each case


# --- the workspace every case runs in ----------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user")
    data = root / "data"
    rng = np.random.default_rng(0)
    for split, count in (("train", 2), ("val", 2)):
        for index in range(count):
            mask = rng.integers(0, 3, size=(20, 24), dtype=np.uint8)
            image = (mask[..., None] * 80 + rng.integers(0, 20, (20, 24, 3))).astype(np.uint8)
            write_pair(data, split, f"item{index}", image, mask)
    images = data / "val" / "images"
    checkpoint = write_checkpoint(root / "good.pt")
    config = root / "good.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"kind": "folder", "root": str(data), "num_classes": 3, "batch_size": 2},
                "model": {"name": "unet", "options": {"base_width": 4}},
                "train": {"epochs": 1},
            }
        )
    )
    bad = root / "bad"
    bad.mkdir()
    write_bad_configs(bad)
    write_bad_checkpoints(bad, checkpoint)
    write_bad_data(bad, data)
    return {
        "root": root,
        "data": data,
        "images": images,
        "checkpoint": checkpoint,
        "config": config,
        "bad": bad,
    }


def write_bad_configs(folder: Path) -> None:
    (folder / "folder.yaml").mkdir()
    bomb = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb += f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    files = {
        "bomb.yaml": bomb,
        "deep.yaml": "a: " + "[" * 3000 + "]" * 3000,
        "list.yaml": "- data\n- model\n",
        "scalar.yaml": "42\n",
        "invalid.yaml": "data: {kind: folder\n",
        "two_documents.yaml": "name: a\n---\nname: b\n",
        "unknown_key.yaml": "data: {num_clases: 3}\n",
        "bad_value.yaml": "train: {lr: -1}\n",
        "recursive.yaml": "data: &a {extra: *a}\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    (folder / "utf16.yaml").write_bytes("name: run\n".encode("utf-16"))
    (folder / "binary.yaml").write_bytes(bytes(range(256)) * 4)


def write_bad_checkpoints(folder: Path, good: Path) -> None:
    (folder / "folder.pt").mkdir()
    (folder / "empty.pt").write_bytes(b"")
    (folder / "text.pt").write_text("these are not weights\n")
    (folder / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    (folder / "garbage.onnx").write_bytes(b"\x08\x07" + np.random.default_rng(2).bytes(900))
    write_bare_onnx(folder / "bare.onnx")
    (folder / "truncated.pt").write_bytes(good.read_bytes()[:2000])
    torch.save([1, 2, 3], folder / "pickle_list.pt")
    state = torch.load(good, weights_only=True)
    mutations = {
        "no_marker.pt": lambda s: s.pop("format"),
        "no_model.pt": lambda s: s.pop("model"),
        "no_state_dict.pt": lambda s: s.pop("state_dict"),
        "no_config.pt": lambda s: s.pop("config"),
        "model_is_list.pt": lambda s: s.__setitem__("model", ["unet"]),
        "model_name_int.pt": lambda s: s["model"].__setitem__("name", 3),
        "model_unknown_name.pt": lambda s: s["model"].__setitem__("name", "unet9000"),
        "num_classes_str.pt": lambda s: s["model"].__setitem__("num_classes", "3"),
        "options_bad.pt": lambda s: s["model"].__setitem__("options", {"base_width": "wide"}),
        "short_class_names.pt": lambda s: s.__setitem__("class_names", ["a"]),
        "class_names_str.pt": lambda s: s.__setitem__("class_names", "abc"),
        "palette_short.pt": lambda s: s.__setitem__("palette", [[0, 0, 0]]),
        "palette_bad.pt": lambda s: s.__setitem__("palette", [["red"], [1], [2, 3, 4, 5]]),
        "state_dict_list.pt": lambda s: s.__setitem__("state_dict", [1, 2]),
        "state_dict_wrong_shape.pt": lambda s: s["state_dict"].__setitem__(
            next(iter(s["state_dict"])), torch.zeros(1)
        ),
        "config_list.pt": lambda s: s.__setitem__("config", [1]),
        "config_bad_value.pt": lambda s: s["config"]["train"].__setitem__("lr", "fast"),
        "config_unknown_key.pt": lambda s: s["config"].__setitem__("bogus", 1),
    }
    for name, mutate in mutations.items():
        copy = torch.load(good, weights_only=True)
        mutate(copy)
        torch.save(copy, folder / name)
    assert state["format"]  # the good one is untouched


def write_bare_onnx(path: Path) -> None:
    """A valid ONNX model that fcnseg did not write (no metadata): Identity, or junk without
    onnx installed (the export extra)."""
    try:
        from onnx import TensorProto, helper, save
    except ImportError:
        path.write_bytes(b"not onnx")
        return
    node = helper.make_node("Identity", ["x"], ["y"])
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])]
    save(helper.make_model(helper.make_graph([node], "bare", inputs, outputs)), path)


def write_bad_data(folder: Path, good: Path) -> None:
    (folder / "empty_data").mkdir()
    (folder / "file_not_folder").write_text("not a folder\n")

    def copy_of(name: str) -> Path:
        target = folder / name
        for source in good.rglob("*"):
            if source.is_file():
                destination = target / source.relative_to(good)
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(source.read_bytes())
        return target

    copy_of("utf16_classes").joinpath("classes.txt").write_bytes("a\nb\nc\n".encode("utf-16"))
    copy_of("binary_classes").joinpath("classes.txt").write_bytes(bytes(range(256)))
    copy_of("huge_index_classes").joinpath("classes.txt").write_text("0 a\n1 b\n4000000000 c\n")
    copy_of("negative_index_classes").joinpath("classes.txt").write_text("0 a\n-1 b\n2 c\n")
    copy_of("bad_colour_classes").joinpath("classes.txt").write_text("a 0,0,0\nb 999,0,0\nc\n")
    for name, text in (
        ("utf16_split_list", "item0\n".encode("utf-16")),
        ("empty_split_list", b"\n\n"),
    ):
        lists = folder / name  # the lists layout: images/, masks/, train.txt, val.txt
        for split in ("train", "val"):
            for kind in ("images", "masks"):
                for source in (good / split / kind).iterdir():
                    target = lists / kind / f"{split}-{source.name}"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(source.read_bytes())
            (lists / f"{split}.txt").write_bytes(text)
    for split in ("train", "val"):
        for mask in (copy_of("masks_missing") / split / "masks").iterdir():
            mask.unlink()
    small = copy_of("mask_size_mismatch")
    for split in ("train", "val"):
        for mask in (small / split / "masks").iterdir():
            write_pair(
                small, split, mask.stem, np.zeros((20, 24, 3), np.uint8), np.zeros((7, 5), np.uint8)
            )


# --- running one case ---------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and modification time (ns)."""
    entries = {}
    for folder, _, files in os.walk(root):
        entries[folder] = (0, 0)
        for name in files:
            status = os.stat(os.path.join(folder, name))
            entries[os.path.join(folder, name)] = (status.st_size, status.st_mtime_ns)
    return entries


def fill(argument: str, paths: dict[str, str]) -> str:
    """{name} -> the workspace's path of that name (other braces, as in YAML, stay)."""
    for name, path in paths.items():
        argument = argument.replace("{" + name + "}", path)
    return argument


@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def hang(signum, frame):
        raise TimeoutError(f"the command ran past {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run(argv: list[str]) -> int:
    with alarm(CASE_SECONDS):
        try:
            return main(argv)
        except SystemExit as exit:  # argparse's own refusals
            return exit.code if isinstance(exit.code, int) else 2


@pytest.mark.parametrize("argv", [argv for _, argv in CASES], ids=[i for i, _ in CASES])
def test_a_bad_argument_ends_in_one_sentence(argv, workspace, capsys, monkeypatch):
    paths = {name: str(path) for name, path in workspace.items()}
    paths["new"] = str(workspace["root"] / "new-output")  # must not be left behind
    monkeypatch.chdir(workspace["root"])
    arguments = [fill(part, paths) for part in argv]
    before = snapshot(workspace["root"])
    try:
        status = run(arguments)
    finally:  # a case that wrongly succeeds must not spoil the next ones
        after = snapshot(workspace["root"])
        shutil.rmtree(paths["new"], ignore_errors=True)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err, captured.err
    assert status == 2, f"exit status {status}; stderr: {captured.err}"
    assert len(lines) == 1, f"stderr is not one line:\n{captured.err}"
    assert "error" in lines[0], lines[0]
    assert after == before, "the command changed the user's folder"
