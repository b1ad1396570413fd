"""FCIS's numpy post-processing (fcnseg.export.fcis_numpy) against the PyTorch one: whole, through
an ONNX export in onnxruntime, and piece by piece; its settings from an export's metadata; and
that it needs no torch."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fcnseg.checkpoint import ModelSpec
from fcnseg.export import fcis_numpy
from fcnseg.export.fcis_numpy import Detections, FcisSettings, detect
from fcnseg.models.instances import Instances, psroi, rpn
from fcnseg.models.instances.fcis import FCIS, MERGE_IOU, PRE_NMS, fcis
from fcnseg.models.instances.fcis_targets import BOX_STDS, MASK_THRESHOLD
from tests.models.instances.test_fcis import expected_hand_made_mask, hand_made_outputs

OPTIONS = {"backbone": "resnet18", "width": 16, "rpn_width": 16, "grid_size": 3, "mask_size": 9}
SPEC = {"name": "fcis", "num_classes": 3, "in_channels": 3, "options": OPTIONS}
SIZES = ((61, 83), (96, 128))  # odd, and a multiple of the stride


@pytest.fixture(scope="module")
def model() -> FCIS:
    """The tiny FCIS of SPEC, seeded. The reference initialisation (std 0.01) scores every ROI
    near 1/K with near-identical boxes: wider heads make scores, refined boxes and masks differ
    from ROI to ROI, so that ranking, refinement and voting are all exercised."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ModelSpec.from_dict(SPEC).build().eval()
        with torch.no_grad():
            model.rpn_objectness.weight.normal_(std=0.5)
            model.position_scores.weight.normal_(std=0.5)
            model.position_boxes.weight.normal_(std=0.1)
    return model


def maps_of(model: FCIS, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    images = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(size[0]))
    with torch.no_grad():
        return model(images)


def as_numpy(maps: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in maps.items()}


def check_same(found: Detections, expected: Instances) -> None:
    """Equal classes and masks, pixel for pixel, and scores to float32 rounding: the steps are
    PyTorch's in float32, only exp and sums may round their last bit differently."""
    assert len(expected) > 0, "no detection: the comparison would prove nothing"
    np.testing.assert_array_equal(found.classes, expected.classes.numpy())
    np.testing.assert_allclose(found.scores, expected.scores.numpy(), rtol=1e-5, atol=1e-7)
    assert found.masks.dtype == np.bool_ and found.masks.shape == tuple(expected.masks.shape)
    differing = int((found.masks != expected.masks.numpy()).sum())
    assert differing == 0, f"{differing} mask pixels differ"


# ---------------------------------------------------------------- whole, against PyTorch


@pytest.mark.parametrize("size", SIZES)
def test_the_numpy_post_processing_gives_pytorchs_instances(
    model: FCIS, size: tuple[int, int]
) -> None:
    maps = maps_of(model, size)
    (expected,) = model.postprocess(maps, size)
    check_same(detect(as_numpy(maps), size, FcisSettings.from_metadata({"model": SPEC})), expected)


def test_the_hand_made_score_maps_give_the_expected_mask_and_class() -> None:
    settings = FcisSettings(num_classes=3, anchor_sizes=(32,), anchor_ratios=(1.0,))
    settings = dataclasses.replace(settings, grid_size=2, mask_size=4)
    found = detect(as_numpy(hand_made_outputs()), (64, 64), settings)
    assert found.classes.tolist() == [2]
    assert found.scores[0] == pytest.approx(np.exp(8) / (np.exp(8) + np.exp(3) + 1))
    np.testing.assert_array_equal(found.masks[0], expected_hand_made_mask().numpy())


def test_no_proposal_or_no_score_above_the_threshold_gives_empty_arrays(model: FCIS) -> None:
    settings = FcisSettings.from_metadata({"model": SPEC})
    maps = as_numpy(maps_of(model, (61, 83)))
    shrunk = {**maps, "anchor_deltas": np.full_like(maps["anchor_deltas"], -10.0)}  # < min_size
    for found in (
        detect(maps, (61, 83), dataclasses.replace(settings, score_threshold=1.0)),
        detect(shrunk, (61, 83), settings),
    ):
        assert found.masks.shape == (0, 61, 83) and found.masks.dtype == np.bool_
        assert found.classes.shape == found.scores.shape == (0,)


def test_maps_of_one_image_with_or_without_their_batch_axis(model: FCIS) -> None:
    settings = FcisSettings.from_metadata({"model": SPEC})
    maps = as_numpy(maps_of(model, (61, 83)))
    with_axis = detect(maps, (61, 83), settings)
    without = detect({name: value[0] for name, value in maps.items()}, (61, 83), settings)
    assert np.array_equal(with_axis.masks, without.masks)
    assert np.array_equal(with_axis.scores, without.scores)
    batch = {name: np.concatenate([value, value]) for name, value in maps.items()}
    with pytest.raises(ValueError, match=r"maps\[name\]\[i\]"):
        detect(batch, (61, 83), settings)
    with pytest.raises(ValueError, match="position_scores"):  # maps of a 3-class model
        detect(maps, (61, 83), dataclasses.replace(settings, num_classes=4))


def test_onnxruntime_and_numpy_give_pytorchs_instances(model: FCIS, tmp_path: Path) -> None:
    """What a service without torch runs: the exported network, its metadata, this module."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from fcnseg.export.onnx import RawMaps, export_onnx, map_names

    names = map_names(model, 3)
    path = export_onnx(RawMaps(model, names), tmp_path / "fcis.onnx", 3, {"model": SPEC}, names)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = {
        key.removeprefix("fcnseg."): json.loads(value)
        for key, value in session.get_modelmeta().custom_metadata_map.items()
    }
    outputs = [output.name for output in session.get_outputs()]
    images = torch.randn(1, 3, 61, 83, generator=torch.Generator().manual_seed(1))
    maps = dict(zip(outputs, session.run(None, {"image": images.numpy()}), strict=True))
    with torch.no_grad():
        (expected,) = model.postprocess(model(images), (61, 83))
    check_same(detect(maps, (61, 83), FcisSettings.from_metadata(meta)), expected)


# ---------------------------------------------------------------- piece by piece


def random_boxes(generator: np.random.Generator, count: int, extent: float) -> np.ndarray:
    """(count, 4) float32 boxes, many overlapping, some thin, some past the edges."""
    corners = generator.uniform(-0.1 * extent, extent, size=(count, 2))
    sizes = generator.uniform(0.5, 0.4 * extent, size=(count, 2))
    return np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)


def test_box_iou_and_nms_are_torchs() -> None:
    generator = np.random.default_rng(0)
    boxes = random_boxes(generator, 300, 60)
    scores = generator.integers(0, 20, 300).astype(np.float32) / 20  # many ties
    expected_iou = rpn.box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes[:50]))
    assert np.array_equal(fcis_numpy.box_iou(boxes, boxes[:50]), expected_iou.numpy())
    for threshold, limit in ((0.3, 1000), (0.7, 40)):
        expected = rpn.nms(torch.from_numpy(boxes), torch.from_numpy(scores), threshold, limit)
        found = fcis_numpy.nms(boxes, scores, threshold, limit)
        assert len(found) > 10 and found.tolist() == expected.tolist()


def test_proposals_are_torchs() -> None:
    generator = np.random.default_rng(1)
    settings = FcisSettings(num_classes=2, anchor_ratios=(0.5, 1.0), test_rois=30, pre_nms=60)
    objectness = generator.normal(size=(8, 5, 7)).astype(np.float32)
    deltas = (0.3 * generator.normal(size=(32, 5, 7))).astype(np.float32)
    anchors = rpn.AnchorSettings(settings.anchor_sizes, settings.anchor_ratios, settings.stride)
    expected, _ = rpn.propose(
        torch.from_numpy(objectness), torch.from_numpy(deltas), anchors, (70, 101), 60, 30
    )
    found = fcis_numpy.propose(objectness, deltas, (70, 101), settings)
    assert found.shape == (30, 4)
    np.testing.assert_allclose(found, expected.numpy(), rtol=1e-6, atol=1e-5)  # exp's last bit


def test_position_sensitive_pooling_is_torchs() -> None:
    generator = np.random.default_rng(2)
    maps = generator.normal(size=(5 * 3 * 3, 6, 9)).astype(np.float32)  # D = 5, k = 3
    boxes = random_boxes(generator, 40, 150)  # past the 96 x 144 map, some thinner than a cell
    boxes[0] = (30, 20, 30, 20)  # empty
    expected = psroi.position_sensitive_pool(
        torch.from_numpy(maps)[None], torch.zeros(40, dtype=torch.int64), torch.from_numpy(boxes),
        16, 3, 7,
    )  # fmt: skip
    found = fcis_numpy.position_sensitive_pool(maps, boxes, 16, 3, 7)
    assert found.shape == (40, 5, 7, 7) and np.array_equal(found, expected.numpy())


def test_detections_and_voted_masks_are_torchs() -> None:
    generator = np.random.default_rng(3)
    boxes = random_boxes(generator, 60, 50)  # inside x, y < 70
    logits = (2 * generator.normal(size=(60, 3))).astype(np.float32)
    mask_logits = (3 * generator.normal(size=(60, 3, 5, 5))).astype(np.float32)
    # The edges: thin boxes, sure of class 1, that no detection may use (no mask to vote) ...
    boxes[:4, 2] = boxes[:4, 0] + 0.5
    logits[:4, 1] = 10
    # ... and a detection whose mask grows by the vote of a box at IoU 0.5 exactly.
    boxes[4], boxes[5] = (75, 70, 95, 80), (75, 70, 95, 90)
    logits[4], logits[5], mask_logits[4:6] = (0, 0, 12), (0, 0, 9), 10
    probabilities = fcis_numpy.softmax(logits)
    settings = FcisSettings(num_classes=3, score_threshold=0.2, max_detections=15)
    chosen, classes, scores = fcis_numpy.select_detections(boxes, probabilities, settings)
    torch_boxes, torch_probabilities = torch.from_numpy(boxes), torch.from_numpy(probabilities)
    expected = psroi.select_detections(torch_boxes, torch_probabilities, 0.2, 0.3, 15)
    assert len(chosen) == 15 and set(classes.tolist()) == {1, 2}
    assert chosen[0] == 4 and not set(chosen.tolist()) & {0, 1, 2, 3}
    for ours, theirs in zip((chosen, classes, scores), expected, strict=True):
        assert np.array_equal(ours, theirs.numpy())
    found = fcis_numpy.vote_masks(
        boxes, probabilities, mask_logits, chosen, classes, (90, 100), settings
    )
    assert found[0, 70:90, 75:95].all() and found[0].sum() == 20 * 20
    masks = torch.from_numpy(fcis_numpy.sigmoid(mask_logits))  # the same probabilities
    voted = psroi.vote_masks(
        torch_boxes, torch_probabilities, masks, expected[0], expected[1], (90, 100),
        MERGE_IOU, MASK_THRESHOLD,
    )  # fmt: skip
    assert np.array_equal(found, voted.numpy())
    np.testing.assert_allclose(probabilities, torch.from_numpy(logits).softmax(1), rtol=1e-6)


# ---------------------------------------------------------------- settings and imports


def settings_of(model: FCIS) -> FcisSettings:
    """A built model's post-processing settings, from its attributes and fcis.py's constants."""
    return FcisSettings(
        num_classes=model.num_classes,
        anchor_sizes=model.anchors.sizes,
        anchor_ratios=model.anchors.ratios,
        stride=model.anchors.stride,
        grid_size=model.grid_size,
        mask_size=model.mask_size,
        test_rois=model.test_rois,
        score_threshold=model.score_threshold,
        nms_threshold=model.nms_threshold,
        max_detections=model.max_detections,
        pre_nms=PRE_NMS,
        rpn_nms_threshold=rpn.RPN_NMS_THRESHOLD,
        min_size=rpn.MIN_SIZE,
        box_stds=BOX_STDS,
        mask_threshold=MASK_THRESHOLD,
        merge_iou=MERGE_IOU,
    )


@pytest.mark.parametrize(
    ("num_classes", "options"),
    [
        (3, {}),  # every default
        (1, {"output_stride": 8, "anchor_sizes": [24, 48], "anchor_ratios": [1, 2],
             "grid_size": 3, "mask_size": 9, "test_rois": 50, "score_threshold": 0.2,
             "nms_threshold": 0.4, "max_detections": 7, "width": 8, "hard_rois": 16}),
    ],
)  # fmt: skip
def test_settings_from_the_metadata_are_the_models(num_classes: int, options: dict) -> None:
    spec = {"name": "fcis", "num_classes": num_classes, "in_channels": 3, "options": options}
    with torch.device("meta"):  # settings only: no weights
        model = ModelSpec.from_dict(spec).build()
    assert FcisSettings.from_metadata({"model": spec}) == settings_of(model)
    assert fcis_numpy.MAX_LOG_SCALE == rpn.MAX_LOG_SCALE


def test_every_fcis_option_is_read_or_known_to_be_unused() -> None:
    options = set(inspect.signature(fcis).parameters) - {"num_classes", "in_channels"}
    fields = {
        "output_stride" if name == "stride" else name for name in FcisSettings.__annotations__
    }
    assert options <= fields | fcis_numpy.UNUSED_OPTIONS


def test_other_models_and_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match="not 'fcis'"):
        FcisSettings.from_metadata({"model": {**SPEC, "name": "instancefcn"}})
    with pytest.raises(ValueError, match=r"\['voting'\] are unknown"):
        FcisSettings.from_metadata({"model": {**SPEC, "options": {"voting": "max"}}})


def test_the_module_needs_numpy_and_the_standard_library_only() -> None:
    path = Path(fcis_numpy.__file__)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would tie the file to fcnseg"
            imported.add(str(node.module).split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"numpy"}
    # The file alone, with torch and fcnseg made unimportable, still loads and runs.
    script = (
        "import importlib.util, sys\n"
        "sys.modules['torch'] = sys.modules['fcnseg'] = None\n"
        f"spec = importlib.util.spec_from_file_location('fcis_numpy', {str(path)!r})\n"
        "module = sys.modules['fcis_numpy'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print(module.box_iou(*[module.np.float32([[0, 0, 2, 2]])] * 2))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[[1.]]", result.stderr
