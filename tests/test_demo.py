"""`fcnseg demo` trains on exactly the shapes it writes to disk, whatever the seed, with a
recipe that suits the model named on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcnseg.cli import main
from fcnseg.commands import resolve_config
from fcnseg.commands.semantic import demo_recipe
from fcnseg.config import load_config
from fcnseg.data import make_dataset
from fcnseg.data.synthetic import generate_sample
from fcnseg.models import build_model, task_of

TINY = [
    "data.synthetic_train=6",
    "data.synthetic_val=3",
    "data.synthetic_size=[40,52]",
    "data.batch_size=3",
    "train.epochs=1",
    "model.options.base_width=4",
]


def test_the_demo_trains_on_the_files_it_wrote_with_its_seed(tmp_path: Path):
    out = tmp_path / "demo"
    overrides = [arg for item in [*TINY, "train.seed=5"] for arg in ("--set", item)]
    assert main(["demo", "--out", str(out), "--no-progress", *overrides]) == 0
    config = load_config(out / "config.yaml")
    assert config.data.kind == "folder" and Path(config.data.root) == out / "data"
    trained_on = make_dataset(config.data, config.data.train_split, train=False)
    names = sorted(p.name for p in (out / "data" / "train" / "images").iterdir())
    assert len(trained_on) == len(names) == 6
    image, mask = trained_on.source.load(0)
    on_disk = np.asarray(Image.open(out / "data" / "train" / "images" / names[0]))
    assert np.array_equal(image, on_disk)
    expected_image, expected_mask = generate_sample(5, 0, (40, 52))  # seed 5, first split
    assert np.array_equal(image, expected_image) and np.array_equal(mask, expected_mask)
    assert (out / "report.html").is_file() and (out / "best.pt").is_file()
    from fcnseg.checkpoint import load_checkpoint
    from fcnseg.palette import PALETTE

    checkpoint = load_checkpoint(out / "best.pt")
    assert checkpoint["palette"] == PALETTE[:4].tolist()  # the colours travel with the model
    assert checkpoint["class_names"] == ["background", "circle", "rectangle", "triangle"]


@pytest.mark.parametrize(
    ("task", "overrides", "recipe", "prepended"),
    [
        ("semantic", ["train.epochs=1"], "demo", []),
        ("instance", [], "demo_instance", []),
        # FCIS has a demo recipe sized for CPU; the recipe's InstanceFCN options would not fit it
        ("instance", ["model.name=fcis"], "demo_fcis", []),
        # any other model keeps the task's recipe but not its model's options
        ("semantic", [" model.name = deeplabv3plus"], "demo", ["model.options={}"]),
        ("semantic", ["model.name=linknet", "model.options.backbone=resnet18"], "demo", []),
    ],
)
def test_the_demo_recipe_follows_the_named_model(
    task: str, overrides: list[str], recipe: str, prepended: list[str]
) -> None:
    assert demo_recipe(task, overrides) == (recipe, [*prepended, *overrides])


@pytest.mark.parametrize("name", ["fcis", "deeplabv3plus"])
def test_a_model_named_on_the_demo_gets_options_it_accepts(name: str) -> None:
    task = task_of(name)
    recipe, overrides = demo_recipe(task, [f"model.name={name}"])
    config = load_config(resolve_config(recipe), overrides)
    assert config.model.name == name and config.task == task
    build_model(name, config.data.num_classes, 3, **config.model.options)  # no option refused
