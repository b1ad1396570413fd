"""ONNX export against PyTorch (onnxruntime is the trusted reference), int8, the CPU fast path."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fcnseg import FcnsegError
from fcnseg.checkpoint import ModelSpec, model_checkpoint, save_checkpoint
from fcnseg.cli import main
from fcnseg.config import Config
from fcnseg.data.synthetic import ShapesDataset
from fcnseg.export.onnx import export_onnx
from fcnseg.export.pipeline import export_checkpoint
from fcnseg.inference.backends import OnnxModel, fingerprint, fold_batch_norms, select_backend
from fcnseg.models import build_model

onnx = pytest.importorskip("onnx", reason="the export extra: pip install 'fcnseg[export]'")
pytest.importorskip("onnxruntime", reason="the export extra: pip install 'fcnseg[export]'")

SIZE = (48, 64)
SPEC = {"name": "unet", "num_classes": 4, "in_channels": 3, "options": {"base_width": 4}}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add barrier waits on a shared CPU
    yield
    torch.set_num_threads(threads)


def train_briefly(seed: int, steps: int) -> nn.Module:
    """The tiny U-Net after `steps` Adam steps on generated shapes: logits with some meaning."""
    torch.manual_seed(seed)
    model = build_model(SPEC["name"], 4, **SPEC["options"])
    data = ShapesDataset(16, SIZE, seed=0)
    pairs = [data.load(index) for index in range(len(data))]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    images = torch.stack(
        [torch.from_numpy(((i / 255 - mean) / std).transpose(2, 0, 1)) for i, _ in pairs]
    )
    masks = torch.stack([torch.from_numpy(m) for _, m in pairs])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        batch = slice(step % 4 * 4, step % 4 * 4 + 4)
        loss = F.cross_entropy(model(images[batch].float()), masks[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def write_checkpoint(path: Path, model: nn.Module) -> Path:
    config = Config()
    config.data.synthetic_val, config.data.synthetic_size = 6, SIZE
    config.data.num_classes = 4
    names = ["background", "square", "disc", "triangle"]
    save_checkpoint(model_checkpoint(model, ModelSpec(**SPEC), config, names), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A briefly trained checkpoint and its ONNX export (written once for the module)."""
    folder = tmp_path_factory.mktemp("export")
    checkpoint = write_checkpoint(folder / "best.pt", train_briefly(seed=0, steps=40))
    lines: list[str] = []
    onnx_path = export_checkpoint(str(checkpoint), print_line=lines.append)
    assert onnx_path == folder / "best.onnx"
    assert any("argmax agreement 100.000%" in line for line in lines), lines
    return checkpoint, onnx_path


def test_onnx_matches_pytorch_at_any_batch_and_size(exported: tuple[Path, Path]):
    checkpoint, onnx_path = exported
    state = torch.load(checkpoint, weights_only=True)
    model = build_model("unet", 4, **SPEC["options"])
    model.load_state_dict(state["state_dict"])
    runner = OnnxModel(onnx_path)
    for shape in [(1, 3, 17, 23), (3, 3, 64, 64), (2, 3, 33, 80)]:  # odd, aligned, mixed
        images = torch.randn(shape)
        with torch.inference_mode():
            expected = model.eval()(images)
        actual = runner(images)
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_the_file_describes_itself_for_serving_without_fcnseg(exported: tuple[Path, Path]):
    checkpoint, onnx_path = exported
    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert metadata["fcnseg.fingerprint"].strip('"') == fingerprint(
        torch.load(checkpoint, weights_only=True)["state_dict"]
    )
    runner = OnnxModel(onnx_path)
    assert runner.metadata["class_names"][1] == "square" and runner.in_channels == 3
    assert runner.metadata["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert runner.metadata["inference_scale"] == 1.0


def test_onnx_backend_predicts_what_torch_predicts(exported: tuple[Path, Path], tmp_path: Path):
    checkpoint, _ = exported
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index in range(2):
        image, _ = ShapesDataset(2, (45, 61), seed=5).load(index)  # odd size
        Image.fromarray(image).save(inputs / f"shape{index}.png")
    for backend in ("onnx", "torch"):
        argv = ["predict", str(checkpoint), str(inputs), "--out", str(tmp_path / backend)]
        assert main([*argv, "--backend", backend, "--no-progress"]) == 0
    for index in range(2):
        masks = [
            np.asarray(Image.open(tmp_path / b / f"shape{index}.png")) for b in ("onnx", "torch")
        ]
        assert masks[0].shape == (45, 61) and (masks[0] == masks[1]).mean() >= 0.999


def test_the_documented_onnxruntime_server_gives_fcnseg_predicts_masks(
    exported: tuple[Path, Path], tmp_path: Path
):
    """docs/deployment.md's serve.py (onnxruntime, numpy, Pillow only), run as written."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    code = re.search(r"## Serving with onnxruntime.*?```python\n(.*?)```", page, re.S)
    assert code, "docs/deployment.md lost its serving example"
    script = tmp_path / "serve.py"
    script.write_text(code.group(1))
    checkpoint, onnx_path = exported
    (tmp_path / "in").mkdir()
    image, _ = ShapesDataset(1, (45, 61), seed=7).load(0)
    Image.fromarray(image).save(tmp_path / "in" / "street.png")
    argv = [
        str(script),
        str(onnx_path),
        str(tmp_path / "in" / "street.png"),
        str(tmp_path / "m.png"),
    ]
    subprocess.run([sys.executable, *argv], check=True, capture_output=True)
    out = ["--out", str(tmp_path / "fcnseg"), "--backend", "onnx", "--no-progress"]
    assert main(["predict", str(checkpoint), str(tmp_path / "in"), *out]) == 0
    served = np.asarray(Image.open(tmp_path / "m.png"))
    predicted = np.asarray(Image.open(tmp_path / "fcnseg" / "street.png"))
    assert served.shape == (45, 61) and np.array_equal(served, predicted)


def test_an_onnx_file_of_another_checkpoint_is_refused(exported, tmp_path: Path, capsys):
    _, onnx_path = exported
    other = write_checkpoint(tmp_path / "other.pt", train_briefly(seed=1, steps=1))
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(image)
    argv = ["predict", str(other), str(image), "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*argv, "--backend", "onnx", "--onnx", str(onnx_path)]) == 2
    assert "exported from a different checkpoint" in capsys.readouterr().err
    # auto mode passes a stale file over instead, with a note, and uses torch
    network, description = select_backend(
        build_model("unet", 4, **SPEC["options"]),
        other,
        "auto",
        onnx_path,
    )
    assert isinstance(network, nn.Module) and "passed over" in description


def test_a_foreign_onnx_file_is_refused(exported, tmp_path: Path):
    checkpoint, onnx_path = exported
    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    with pytest.raises(FcnsegError, match="not written by fcnseg export"):
        OnnxModel(tmp_path / "foreign.onnx").check_matches(
            torch.load(checkpoint, weights_only=True)["state_dict"]
        )


def test_int8_is_judged_on_validation_data_and_refused_past_the_margin(exported, tmp_path: Path):
    checkpoint, _ = exported
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for index in range(8):
        image, _ = ShapesDataset(8, SIZE, seed=0).load(index)
        Image.fromarray(image).save(calibration / f"{index}.png")
    lines: list[str] = []
    int8_path = export_checkpoint(
        str(checkpoint),
        int8=True,
        calibrate=str(calibration),
        max_drop=5.0,
        print_line=lines.append,
    )
    assert int8_path.name == "best.int8.onnx" and int8_path.is_file()
    assert any(line.startswith("int8 on 6 validation images: mIoU float32") for line in lines)
    assert OnnxModel(int8_path).metadata["precision"] == "int8"
    quantized_ops = {node.op_type for node in onnx.load(str(int8_path)).graph.node}
    assert "QuantizeLinear" in quantized_ops
    # A margin no model can meet: the file must not be left behind, unless forced.
    strict = tmp_path / "strict.onnx"
    with pytest.raises(FcnsegError, match="it was not written"):
        export_checkpoint(str(checkpoint), str(strict), True, str(calibration), max_drop=-100)
    assert not strict.exists()
    forced = export_checkpoint(
        str(checkpoint),
        str(strict),
        True,
        str(calibration),
        max_drop=-100,
        force=True,
        print_line=lines.append,
    )
    assert forced.is_file()


def test_export_refuses_a_path_that_is_not_onnx(exported):
    checkpoint, _ = exported
    with pytest.raises(FcnsegError, match=r"must end in \.onnx"):
        export_checkpoint(str(checkpoint), str(checkpoint))  # would overwrite the checkpoint


@pytest.mark.parametrize(
    ("name", "options"),
    [("unet", {"base_width": 4}), ("linknet", {}), ("deeplabv3plus", {"backbone": "resnet18"})],
)
def test_folding_batch_norms_keeps_the_outputs_and_the_original(name: str, options: dict):
    torch.manual_seed(0)
    model = build_model(name, 3, **options).eval()
    for module in model.modules():  # non-trivial statistics, so that folding has work to do
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    norms_before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    folded, count = fold_batch_norms(model, channels=3)
    assert count > 0 and sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == (
        norms_before - count
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == norms_before
    for shape in [(2, 3, 45, 61), (1, 3, 200, 232)]:  # DeepLab: atrous taps dropped / split
        images = torch.randn(shape)
        with torch.inference_mode():
            torch.testing.assert_close(folded(images), model(images), atol=1e-4, rtol=1e-4)


def test_an_exported_deeplab_keeps_every_atrous_tap_for_every_size(tmp_path: Path):
    """AtrousConv2d's size-dependent shortcuts must not be baked into the graph at the size of
    the export's example: stride-16 maps of 4x4 (all off-centre taps in the padding), 13x15
    and 23x30 (none)."""
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", 3, backbone="resnet18").eval()
    runner = OnnxModel(export_onnx(model, tmp_path / "deeplab.onnx", 3, metadata={}))
    for shape in [(1, 3, 64, 64), (1, 3, 200, 232), (1, 3, 360, 480)]:
        images = torch.randn(shape)
        with torch.inference_mode():
            expected = model(images)
        torch.testing.assert_close(runner(images), expected, atol=1e-4, rtol=1e-4)
