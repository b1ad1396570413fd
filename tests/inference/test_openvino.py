"""OpenVINO as a backend (fcnseg.inference.openvino) against PyTorch and ONNX Runtime: the same
exported file gives the same logits in float32, close ones in bf16, and the same masks through
`fcnseg predict --backend openvino`; a file of other weights is refused as for ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcnseg import FcnsegError
from fcnseg.cli import main
from fcnseg.data.synthetic import ShapesDataset
from fcnseg.export.pipeline import export_checkpoint
from fcnseg.inference.backends import OnnxModel
from fcnseg.inference.openvino import OpenVinoModel
from fcnseg.models import build_model
from tests.export.test_onnx import SPEC, train_briefly, write_checkpoint

pytest.importorskip("onnx", reason="the export extra: pip install 'fcnseg[export]'")
pytest.importorskip("onnxruntime", reason="the export extra: pip install 'fcnseg[export]'")
pytest.importorskip("openvino", reason="the openvino extra: pip install 'fcnseg[openvino]'")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("openvino")
    checkpoint = write_checkpoint(folder / "best.pt", train_briefly(seed=1, steps=30))
    return checkpoint, export_checkpoint(str(checkpoint), print_line=lambda line: None)


def test_float32_matches_pytorch_at_any_batch_and_size(exported):
    checkpoint, onnx_path = exported
    model = build_model("unet", 4, **SPEC["options"])
    model.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
    runner = OpenVinoModel(onnx_path)
    assert runner.metadata["class_names"][1] == "square"  # fcnseg's metadata came through
    for shape in [(1, 3, 17, 23), (2, 3, 48, 64)]:
        images = torch.randn(shape)
        with torch.inference_mode():
            expected = model.eval()(images)
        torch.testing.assert_close(runner(images), expected, atol=1e-4, rtol=1e-4)


def test_bf16_stays_close_to_onnxruntime(exported):
    _, onnx_path = exported
    images = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    reference = OnnxModel(onnx_path)(images)
    approximate = OpenVinoModel(onnx_path, precision="bf16")(images)
    scale = reference.abs().max()
    assert (approximate - reference).abs().max() <= 0.1 * scale  # bf16 keeps 8 bits of mantissa
    agreement = (approximate.argmax(1) == reference.argmax(1)).float().mean()
    assert agreement >= 0.95


def test_predict_with_openvino_writes_the_masks_torch_writes(exported, tmp_path: Path):
    checkpoint, _ = exported
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    image, _ = ShapesDataset(1, (45, 61), seed=5).load(0)
    Image.fromarray(image).save(inputs / "shape.png")
    for backend in ("openvino", "torch"):
        argv = ["predict", str(checkpoint), str(inputs), "--out", str(tmp_path / backend)]
        assert main([*argv, "--backend", backend, "--no-progress"]) == 0
    masks = [np.asarray(Image.open(tmp_path / b / "shape.png")) for b in ("openvino", "torch")]
    assert masks[0].shape == (45, 61) and (masks[0] == masks[1]).mean() >= 0.999


def test_a_file_of_other_weights_and_a_bad_precision_are_refused(exported, tmp_path: Path):
    _, onnx_path = exported
    runner = OpenVinoModel(onnx_path)
    other = build_model("unet", 4, **SPEC["options"]).state_dict()
    with pytest.raises(FcnsegError, match="exported from a different checkpoint"):
        runner.check_matches(other)
    with pytest.raises(FcnsegError, match="precision 'fp16' is not one of fp32, bf16"):
        OpenVinoModel(onnx_path, precision="fp16")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(FcnsegError, match="not a model OpenVINO can run"):
        OpenVinoModel(junk)
