"""The Predictor: whole vs tiled inference, blending, test-time augmentation, streamed bands."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fcnseg import FcnsegError
from fcnseg.checkpoint import ModelSpec, load_checkpoint, model_checkpoint, save_checkpoint
from fcnseg.cli import main
from fcnseg.config import Config, DataConfig
from fcnseg.inference import load
from fcnseg.inference.predictor import InferenceOptions, Predictor, probabilities_from_logits
from fcnseg.inference.streaming import BandSource, PngWriter
from fcnseg.inference.tiling import make_grid
from fcnseg.models import build_model

ROOT = Path(__file__).resolve().parents[2]


def smooth_image(count: int, channels: int, height: int, width: int, seed: int = 0):
    """Noise blurred a little, so that it has image-like spatial structure."""
    noise = torch.randn(
        count, channels, height, width, generator=torch.Generator().manual_seed(seed)
    )
    return F.avg_pool2d(noise, 5, stride=1, padding=2) * 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine threads spinning
    at every small kernel's barrier can make them 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_unet() -> nn.Module:
    torch.manual_seed(0)
    return build_model("unet", 3, base_width=4).eval()


@pytest.mark.parametrize(
    ("blend", "tile", "overlap"), [("gaussian", 64, 0.5), ("linear", 96, 0.25)]
)
def test_tiled_agrees_with_whole_image(tiny_unet: nn.Module, blend: str, tile: int, overlap: float):
    # Stated tolerance: away from a 16-pixel image border, tiled logits are within 2% of the
    # logits' range of the whole-image ones, and >= 99.9% of all pixels get the same label.
    # (Tiles see less context and zero padding at their edges; blending hides most of it.)
    images = smooth_image(2, 3, 150, 211)
    whole = Predictor(tiny_unet, options=InferenceOptions(mode="whole")).logits(images)
    options = InferenceOptions(mode="tiled", tile_size=tile, overlap=overlap, blend=blend)
    tiled = Predictor(tiny_unet, options=options).logits(images)
    assert tiled.shape == whole.shape == (2, 3, 150, 211)
    inner = (tiled - whole)[..., 16:-16, 16:-16].abs().max()
    assert inner <= 0.02 * (whole.max() - whole.min())
    agreement = (tiled.argmax(1) == whole.argmax(1)).float().mean()
    assert agreement >= 0.999


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_blending_is_exact_for_a_per_pixel_model(blend: str):
    # A 1x1 convolution sees one pixel, so every tile gives exactly the whole image's logits
    # wherever it covers: blended, the weights must cancel to the same values, borders included.
    torch.manual_seed(1)
    model = nn.Conv2d(3, 4, kernel_size=1)
    images = torch.randn(1, 3, 70, 45)
    whole = Predictor(model, options=InferenceOptions(mode="whole")).logits(images)
    options = InferenceOptions(mode="tiled", tile_size=32, overlap=0.4, blend=blend, tile_batch=3)
    tiled = Predictor(model, options=options).logits(images)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)


def test_tile_grid_covers_the_image_without_passing_its_border():
    grid = make_grid(100, 37, tile=32, overlap=0.25)
    assert grid.tops == (0, 24, 48, 68) and grid.lefts == (0, 5)  # stride 24; last moved back
    covered = torch.zeros(100, 37, dtype=torch.int64)
    for top in grid.tops:
        for left in grid.lefts:
            covered[top : top + grid.tile_h, left : left + grid.tile_w] += 1
    assert covered.min() >= 1 and grid.tops[-1] + grid.tile_h == 100
    small = make_grid(20, 10, tile=32, overlap=0.25)  # smaller than a tile: one tile, cut
    assert (small.tile_h, small.tile_w, small.count) == (20, 10, 1)


def test_label_bands_read_one_tile_row_at_a_time(tiny_unet: nn.Module):
    image = smooth_image(1, 3, 130, 90)[0]
    options = InferenceOptions(mode="tiled", tile_size=48, overlap=0.25)
    predictor = Predictor(tiny_unet, options=options)
    requests = []

    def read_rows(top: int, bottom: int) -> torch.Tensor:
        requests.append((top, bottom))
        return image[:, top:bottom]

    bands = list(predictor.label_bands(read_rows, 130, 90))
    assert all(bottom - top <= 48 for top, bottom in requests)  # never more than a tile row
    assert [top for top, _ in bands] == [0, *np.cumsum([len(b) for _, b in bands])[:-1]]
    joined = torch.cat([labels for _, labels in bands])
    torch.testing.assert_close(joined, predictor.labels(image[None])[0])


def test_flip_augmentation_averages_probabilities(tiny_unet: nn.Module):
    images = smooth_image(1, 3, 41, 57)
    plain = Predictor(tiny_unet, options=InferenceOptions(mode="whole"))
    flipped = Predictor(tiny_unet, options=InferenceOptions(mode="whole", flip=True))
    expected = (
        probabilities_from_logits(plain.logits(images))
        + probabilities_from_logits(plain.logits(images.flip(-1))).flip(-1)
    ) / 2
    torch.testing.assert_close(flipped.probabilities(images), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("size", [(37, 53), (1, 1), (64, 17)])
def test_augmentation_never_changes_the_output_size(tiny_unet: nn.Module, size: tuple[int, int]):
    options = InferenceOptions(mode="whole", flip=True, scales=(0.5, 0.75, 1.0, 1.3))
    predictor = Predictor(tiny_unet, options=options)
    images = smooth_image(2, 3, *size)
    assert predictor.labels(images).shape == (2, *size)
    probabilities = predictor.probabilities(images)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(2, *size))
    options = InferenceOptions(mode="tiled", tile_size=24, flip=True, scales=(0.75, 1.0))
    tiled = Predictor(tiny_unet, options=options)
    assert tiled.labels(images).shape == (2, *size)


def test_auto_mode_tiles_only_past_the_memory_budget(tiny_unet: nn.Module):
    roomy = Predictor(tiny_unet, options=InferenceOptions(tile_size=64, memory_budget_mb=4096))
    tight = Predictor(tiny_unet, options=InferenceOptions(tile_size=64, memory_budget_mb=1))
    assert roomy.bytes_per_pixel() > 0
    assert not roomy.use_tiles(1, 300, 300) and tight.use_tiles(1, 300, 300)
    assert not tight.use_tiles(1, 60, 60)  # fits in one tile: no tiling to do
    forced = Predictor(tiny_unet, options=InferenceOptions(mode="whole", memory_budget_mb=1))
    assert not forced.use_tiles(1, 300, 300)


def test_a_wrong_channel_count_is_a_clear_error(tiny_unet: nn.Module):
    with pytest.raises(FcnsegError, match="takes 3-channel images but got 1"):
        Predictor(tiny_unet).labels(torch.zeros(1, 1, 16, 16))


def test_bad_options_are_refused():
    with pytest.raises(FcnsegError, match="mode"):
        InferenceOptions(mode="sliding")
    with pytest.raises(FcnsegError, match="scales"):
        InferenceOptions(scales=(0.0, 1.0))


def test_a_model_trained_at_half_resolution_sees_half_resolution_images(tmp_path: Path):
    """data.inference_scale 0.5: the image is halved, the logits brought back to its size."""
    checkpoint = write_checkpoint(tmp_path / "best.pt", inference_scale=0.5)
    predictor = load(checkpoint, "cpu", InferenceOptions("whole"))
    model = build_model("unet", 3, base_width=4)
    model.load_state_dict(load_checkpoint(checkpoint)["state_dict"])
    images = smooth_image(1, 3, 40, 62)
    with torch.no_grad():
        logits = model.eval()(F.interpolate(images, size=(20, 31), mode="bilinear"))
    expected = F.interpolate(logits, size=(40, 62), mode="bilinear").log_softmax(1)
    torch.testing.assert_close(predictor.logits(images), expected, atol=1e-5, rtol=1e-4)
    # Test-time scales are relative to the training resolution: 1.0 and 2.0 -> 0.5 and 1.0.
    assert InferenceOptions(scales=(1.0, 2.0)).at_scale(0.5).scales == (0.5, 1.0)
    with pytest.raises(FcnsegError, match="inference_scale must be a positive number"):
        InferenceOptions().at_scale(0.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_writer_streams_rows_that_pillow_reads_back(tmp_path: Path, channels: int):
    rng = np.random.default_rng(0)
    shape = (45, 31) if channels == 1 else (45, 31, 3)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    palette = rng.integers(0, 256, size=(256, 3), dtype=np.uint8) if channels == 1 else None
    with PngWriter(tmp_path / "a.png", 31, 45, channels, palette) as writer:
        for top in range(0, 45, 10):  # bands of 10, the last of 5
            writer.write(pixels[top : top + 10])
    with Image.open(tmp_path / "a.png") as image:
        assert image.mode == ("P" if channels == 1 else "RGB")
        assert np.array_equal(np.asarray(image), pixels)
        if palette is not None:
            assert np.array_equal(np.asarray(image.getpalette(), np.uint8).reshape(-1, 3), palette)


def test_a_failed_band_writer_leaves_no_file(tmp_path: Path):
    with pytest.raises(RuntimeError), PngWriter(tmp_path / "half.png", 4, 4) as writer:
        writer.write(np.zeros((2, 4), np.uint8))
        raise RuntimeError("the model failed mid-image")
    assert not (tmp_path / "half.png").exists()


def test_uncompressed_tiff_is_read_in_bands(tmp_path: Path):
    import tifffile

    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", pixels)
    source = BandSource(tmp_path / "a.tif", DataConfig(image_mode="RGB"))
    assert source.streamed and (source.height, source.width) == (40, 30)
    assert np.array_equal(source.rows(7, 19), pixels[7:19])
    grey = BandSource(tmp_path / "a.tif", DataConfig(image_mode="L"))  # converted as Pillow does
    expected = np.asarray(Image.fromarray(pixels).convert("L"))[..., None]
    assert np.array_equal(grey.rows(0, 40), expected)


def _peak_rss_mb(tmp_path: Path, height: int, width: int) -> float:
    """Predict a height x width greyscale TIFF in a child process, return its peak RSS."""
    import tifffile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from large_image import run_child, write_checkpoint

    write_checkpoint(tmp_path / "model.pt", base_width=4)
    image = tmp_path / f"image{height}.tif"
    tifffile.imwrite(image, np.full((height, width), 90, np.uint8))
    result = run_child(tmp_path / "model.pt", image, tmp_path / f"out{height}", 128, threads=1)
    assert not result["failures"]
    mask = Image.open(tmp_path / f"out{height}" / f"image{height}.png")
    assert mask.size == (width, height) and mask.mode == "P"
    return result["peak_mb"]


def test_streamed_prediction_memory_does_not_grow_with_image_height(tmp_path: Path):
    # Same width, 8x the rows: held whole, the taller image's input, logits, labels and
    # overlay would take over 100 MB more; streamed in bands, only the tile and width count.
    short = _peak_rss_mb(tmp_path, 512, 1024)
    tall = _peak_rss_mb(tmp_path, 4096, 1024)
    assert tall - short < 40, (short, tall)


def write_checkpoint(
    path: Path, channels: int = 3, alpha: str = "drop", inference_scale: float = 1.0
) -> Path:
    """An untrained tiny U-Net checkpoint reading `channels`-channel images."""
    torch.manual_seed(0)
    spec = ModelSpec("unet", 3, channels, {"base_width": 4})
    config = Config()
    config.data.num_classes, config.data.image_alpha = 3, alpha
    config.data.mean, config.data.std = (0.5,) * channels, (0.25,) * channels
    config.data.inference_scale = inference_scale
    save_checkpoint(model_checkpoint(spec.build(), spec, config, ["a", "b", "c"]), path)
    return path


def test_predict_reads_any_depth_and_names_the_files_it_cannot(tmp_path: Path, capsys):
    checkpoint = write_checkpoint(tmp_path / "best.pt")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (21, 34), np.uint8)).save(inputs / "grey.png")
    Image.fromarray(rng.integers(0, 256, (22, 35, 4), np.uint8)).save(inputs / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (23, 36), np.uint16)).save(inputs / "deep.png")
    cv2.imwrite(str(inputs / "deep_rgb.png"), rng.integers(0, 65536, (24, 37, 3), np.uint16))
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    argv = ["predict", str(checkpoint), str(inputs), "--out", str(tmp_path / "out")]
    assert main([*argv, "--backend", "torch", "--no-progress"]) == 1
    assert "broken.png" in capsys.readouterr().err
    for stem, size in (
        ("grey", (34, 21)),
        ("rgba", (35, 22)),
        ("deep", (36, 23)),
        ("deep_rgb", (37, 24)),
    ):
        mask = Image.open(tmp_path / "out" / f"{stem}.png")
        assert mask.mode == "P" and mask.size == size, stem
        assert Image.open(tmp_path / "out" / f"{stem}_overlay.png").size == size
    assert sorted(p.name for p in inputs.iterdir())[0] == "broken.png"  # inputs untouched


def test_a_model_trained_with_alpha_refuses_images_without_it(tmp_path: Path, capsys):
    checkpoint = write_checkpoint(tmp_path / "best.pt", channels=4, alpha="keep")
    image = tmp_path / "in" / "rgb.png"
    image.parent.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    argv = ["predict", str(checkpoint), str(image), "--out", str(tmp_path / "out"), "--no-progress"]
    assert main(argv) == 1
    assert "has no alpha channel" in capsys.readouterr().err


def test_a_streamed_image_gets_exactly_the_tiled_labels(tmp_path: Path):
    import tifffile

    checkpoint = write_checkpoint(tmp_path / "best.pt")
    pixels = (smooth_image(1, 3, 150, 97)[0].permute(1, 2, 0).numpy() * 60 + 128).clip(0, 255)
    pixels = pixels.astype(np.uint8)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "big.tif", pixels)  # uncompressed: read in bands
    argv = ["predict", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--mode", "tiled", "--tile-size", "48", "--backend", "torch"]) == 0
    streamed = np.asarray(Image.open(tmp_path / "out" / "big.png"))
    predictor = load(checkpoint, "cpu", InferenceOptions("tiled", 48))
    expected = predictor.labels(predictor.normalise(pixels)[None])[0].numpy()
    assert streamed.shape == (150, 97) and (streamed == expected).mean() >= 0.999
