"""The dense CRF as the Predictor's post-processing: whole and tiled, greyscale, and `--crf`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg import FcnsegError
from fcnseg.checkpoint import ModelSpec, model_checkpoint, save_checkpoint
from fcnseg.cli import main
from fcnseg.config import Config, CRFParameters, DataConfig
from fcnseg.data import write_shapes_folder
from fcnseg.inference.options import InferenceOptions, crf_parameters
from fcnseg.inference.predictor import Predictor
from fcnseg.models.crf import colour_image, dense_crf

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Reaches 3 iterations x 2 samples x 2 pixels = 12 pixels: tiles overlapping by 32 see it all.
CRF = CRFParameters(iterations=3, window=5, dilation=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def blocks_image(
    height: int, width: int, channels: int = 3, seed: int = 0, noise: float = 6.0
) -> torch.Tensor:
    """(1, C, H, W) colours on 0..255: flat random blocks plus noise, like a scene."""
    generator = torch.Generator().manual_seed(seed)
    blocks = torch.rand(1, channels, 5, 6, generator=generator) * 255
    image = F.interpolate(blocks, size=(height, width), mode="nearest")
    return (image + noise * torch.randn(image.shape, generator=generator)).clamp(0, 255)


def normalised(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]):
    return (image / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(
        1, -1, 1, 1
    )


def per_pixel_model(in_channels: int = 3, classes: int = 3) -> nn.Module:
    """Scores from each pixel's colour alone, noisy: tiles then change nothing but the CRF."""
    torch.manual_seed(0)
    model = nn.Conv2d(in_channels, classes, kernel_size=1)
    return model


def test_tiled_crf_agrees_with_the_whole_image_crf():
    pixels = blocks_image(96, 130, noise=20.0)  # noisy colours: noisy per-pixel labels
    images = normalised(pixels, MEAN, STD)
    model, data = per_pixel_model(), DataConfig()
    plain = Predictor(model, options=InferenceOptions(mode="whole"), data=data)
    whole = Predictor(model, options=InferenceOptions(mode="whole", crf=CRF), data=data)
    tiled_options = InferenceOptions(mode="tiled", tile_size=64, overlap=0.5, crf=CRF)
    tiled = Predictor(model, options=tiled_options, data=data)
    before, after, tiled_labels = plain.labels(images), whole.labels(images), tiled.labels(images)
    assert (after != before).float().mean() > 0.02  # the CRF changed labels: a real comparison
    assert len(after.unique()) > 1  # and did not flatten the image into one class
    assert (tiled_labels == after).float().mean() >= 0.99


def test_the_predictor_runs_the_crf_on_its_scores_with_the_de_normalised_image():
    pixels = blocks_image(31, 45, seed=1)
    images = normalised(pixels, MEAN, STD)
    model = per_pixel_model()
    predictor = Predictor(model, options=InferenceOptions(mode="whole", crf=CRF), data=DataConfig())
    colours = colour_image(images, MEAN, STD)
    torch.testing.assert_close(colours, pixels, atol=1e-3, rtol=0)  # de-normalised
    with torch.no_grad():
        expected = dense_crf(model(images), colours, CRF)
    torch.testing.assert_close(predictor.logits(images), expected, atol=1e-5, rtol=1e-5)


def test_a_greyscale_model_uses_the_grey_value_as_all_three_colours():
    pixels = blocks_image(23, 29, channels=1, seed=2)
    images = normalised(pixels, (0.5,), (0.25,))
    model = per_pixel_model(in_channels=1)
    data = DataConfig(mean=(0.5,), std=(0.25,))
    predictor = Predictor(model, options=InferenceOptions(mode="whole", crf=CRF), data=data)
    with torch.no_grad():
        expected = dense_crf(model(images), pixels.expand(-1, 3, -1, -1), CRF)
    torch.testing.assert_close(predictor.logits(images), expected, atol=1e-4, rtol=1e-4)


def test_without_a_data_config_the_crf_is_refused_clearly():
    predictor = Predictor(per_pixel_model(), options=InferenceOptions(crf=CRF))
    with pytest.raises(FcnsegError, match="no data config to de-normalise"):
        predictor.labels(torch.zeros(1, 3, 8, 8))


def test_crf_settings_come_from_the_saved_config_and_the_flags():
    saved = {"appearance_weight": 7, "window": 5}
    settings = crf_parameters(saved, ["iterations=2", "dilation=1"])
    assert settings == CRFParameters(appearance_weight=7.0, window=5, iterations=2, dilation=1)
    assert crf_parameters(None) == CRFParameters()
    with pytest.raises(FcnsegError, match=r"unknown config key 'inference.crf.windw'.*'window'"):
        crf_parameters(None, ["windw=3"])
    with pytest.raises(FcnsegError, match="--crf-set expects key=value"):
        crf_parameters(None, ["window"])
    with pytest.raises(FcnsegError, match=r"inference\.crf\.window"):
        crf_parameters(None, ["window=4"])


def test_evaluate_with_crf_uses_the_checkpoints_settings(tmp_path: Path):
    torch.manual_seed(0)
    spec = ModelSpec("unet", 4, 3, {"base_width": 4})
    config = Config()
    config.inference.crf = CRFParameters(appearance_weight=7.0, window=5)
    save_checkpoint(model_checkpoint(spec.build(), spec, config), tmp_path / "best.pt")
    write_shapes_folder(tmp_path / "data", {"val": 2}, (40, 52))
    out = tmp_path / "evaluation"
    argv = ["evaluate", str(tmp_path / "best.pt"), "--data", str(tmp_path / "data")]
    assert main([*argv, "--out", str(out), "--crf", "--crf-set", "iterations=1"]) == 0
    report = (out / "report.md").read_text()
    assert "iterations=1, appearance_weight=7.0" in report and "window=5" in report
