"""Attention pictures in the report: written for a model with gates, absent for one without."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnseg.data.dataset import SegmentationDataset
from fcnseg.data.transforms import build_transform
from fcnseg.inference.options import InferenceOptions
from fcnseg.inference.predictor import Predictor
from fcnseg.models import build_model
from fcnseg.report.evaluation import evaluate
from fcnseg.report.figures_attention import attention_samples
from fcnseg.report.run_report import write_run_report

NAMES = ["background", "thing"]


class Source:
    """Four random 21x30 images, each with a square of class 1."""

    def __init__(self) -> None:
        generator = np.random.default_rng(0)
        self.names, self.class_names = [f"image{i}" for i in range(4)], NAMES
        self.images = [generator.integers(0, 256, (21, 30, 3), dtype=np.uint8) for _ in range(4)]
        self.mask = np.zeros((21, 30), np.int64)
        self.mask[5:15, 8:20] = 1

    def __len__(self) -> int:
        return 4

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.mask


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def dataset() -> SegmentationDataset:
    return SegmentationDataset(Source(), build_transform("none", (0.5,) * 3, (0.25,) * 3, 3))


def unet(attention: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", 2, base_width=4, attention=attention).eval()


def test_the_report_shows_one_map_per_gate_for_an_attention_unet(tmp_path: Path) -> None:
    evaluation = evaluate(Predictor(unet(attention=True)), dataset(), 2)
    assert [sample.name for sample in evaluation.attention] == ["image0", "image1", "image2"]
    maps = evaluation.attention[0].maps
    assert list(maps) == ["stride 8", "stride 4", "stride 2", "stride 1"]
    assert maps["stride 1"].shape == (21, 30) and maps["stride 8"].shape == (3, 4)
    assert all(alpha.min() >= 0 and alpha.max() <= 1 for alpha in maps.values())
    write_run_report(tmp_path, evaluation, NAMES, [])
    assert (tmp_path / "attention.png").read_bytes().startswith(b"\x89PNG")
    assert "![attention](attention.png)" in (tmp_path / "report.md").read_text()
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Attention gates</h2>" in html
    assert re.search(r'<img alt="attention" src="data:image/png;base64,', html)


def test_no_attention_pictures_for_a_plain_unet(tmp_path: Path) -> None:
    evaluation = evaluate(Predictor(unet(attention=False)), dataset(), 2)
    assert evaluation.attention == []
    write_run_report(tmp_path, evaluation, NAMES, [])
    assert not (tmp_path / "attention.png").exists()
    assert "Attention" not in (tmp_path / "report.html").read_text()
    assert "attention" not in (tmp_path / "report.md").read_text()


def test_maps_are_made_at_the_predictors_inference_scale() -> None:
    predictor = Predictor(unet(attention=True), options=InferenceOptions().at_scale(0.5))
    samples = attention_samples(predictor, dataset(), count=1)
    assert samples[0].maps["stride 1"].shape == (10, 15)  # 21x30 seen at half size: 10x15
