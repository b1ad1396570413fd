"""`fcnseg demo` trains on exactly the shapes it writes to disk, whatever the seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fcnseg.cli import main
from fcnseg.config import load_config
from fcnseg.data import make_dataset
from fcnseg.data.synthetic import generate_sample

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
