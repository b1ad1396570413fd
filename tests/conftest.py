"""Shared fixtures: small folder datasets written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_pair(root: Path, split: str, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    """Write one image/mask pair in the folder layout <root>/<split>/{images,masks}/<name>.png."""
    for folder in ("images", "masks"):
        (root / split / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / split / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / split / "masks" / f"{name}.png")


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    """A 3-class folder dataset, 4 train + 2 val pairs of 37x53 (odd sizes on purpose)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, count in (("train", 4), ("val", 2)):
        for index in range(count):
            mask = rng.integers(0, 3, size=(37, 53), dtype=np.uint8)
            image = (mask[..., None] * 80 + rng.integers(0, 20, size=(37, 53, 3))).astype(np.uint8)
            write_pair(root, split, f"item{index}", image, mask)
    return root


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core machine: a second thread only spins (up to 25x slower).
    A test module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
