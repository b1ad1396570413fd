"""Instance inference: fcnseg.load of an instance checkpoint, the files `predict` writes for
each image (ID map and JSON from hand-built instances), and the numpy drawing of instances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fcnseg
import fcnseg.inference.instances as instances_module
from fcnseg.checkpoint import ModelSpec, model_checkpoint, save_checkpoint
from fcnseg.config import Config
from fcnseg.inference import InferenceOptions, InstancePredictor
from fcnseg.inference.instance_files import instance_records
from fcnseg.inference.instance_pictures import (
    dashed,
    id_contours,
    instance_colours,
    mark_ids,
    paint_ids,
    renumbered,
)
from fcnseg.models.instances import Instances

NAMES = ["background", "cell", "blob"]
COLOURS = [[0, 0, 0], [200, 10, 10], [10, 200, 10]]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_instance_checkpoint(path: Path, inference_scale: float = 1.0) -> Path:
    """An untrained InstanceFCN (3 classes, width 16) with its own normalisation and classes."""
    torch.manual_seed(0)
    spec = ModelSpec("instancefcn", 3, 3, {"width": 16, "window_sizes": [16, 24]})
    config = Config(task="instance")
    config.model.name = "instancefcn"
    config.data.num_classes = 3
    config.data.mean, config.data.std = (0.5,) * 3, (0.25,) * 3
    config.data.inference_scale = inference_scale
    save_checkpoint(model_checkpoint(spec.build(), spec, config, NAMES, COLOURS), path)
    return path


def test_load_gives_an_instance_predictor_that_matches_the_model(tmp_path: Path):
    predictor = fcnseg.load(write_instance_checkpoint(tmp_path / "best.pt"), device="cpu")
    assert isinstance(predictor, InstancePredictor)
    assert predictor.class_names == NAMES and predictor.palette[:3].tolist() == COLOURS
    assert predictor.checkpoint["task"] == "instance" and "state_dict" not in predictor.checkpoint
    image = np.random.default_rng(0).integers(0, 256, size=(37, 45, 3), dtype=np.uint8)
    normalised = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(predictor.normalise(image), normalised, atol=1e-5)
    found = predictor.predict_image(image)
    (expected,) = predictor.model.eval().predict(predictor.normalise(image)[None])
    assert found.masks.shape == (len(found), 37, 45)
    assert torch.equal(found.masks, expected.masks)
    assert torch.equal(found.classes, expected.classes)
    assert torch.equal(found.scores, expected.scores)


def test_the_inference_scale_is_applied_and_masks_come_back_at_the_image_size(tmp_path: Path):
    predictor = fcnseg.load(write_instance_checkpoint(tmp_path / "b.pt", 0.5), device="cpu")
    seen: list[tuple[int, ...]] = []
    predictor.model.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    found = predictor.predict_image(np.zeros((48, 64, 3), np.uint8))
    assert seen == [(1, 3, 24, 32)]
    assert found.masks.shape[1:] == (48, 64)


def test_semantic_only_options_are_refused_for_an_instance_model(tmp_path: Path):
    path = write_instance_checkpoint(tmp_path / "best.pt")
    with pytest.raises(fcnseg.FcnsegError, match="--flip / --scales"):
        fcnseg.load(path, device="cpu", options=InferenceOptions(flip=True))
    with pytest.raises(fcnseg.FcnsegError, match="--mode tiled"):
        fcnseg.load(path, device="cpu", options=InferenceOptions(mode="tiled"))


def hand_instances() -> Instances:
    """Three instances on 6 x 8: a (score 0.9) and b (0.6) overlap, c (0.3) lies under a."""
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:4, 1:5] = True  # a: rows 1-3, columns 1-4
    masks[1, 2:6, 4:8] = True  # b: rows 2-5, columns 4-7; shares (2..3, 4) with a
    masks[2, 2:3, 2:4] = True  # c: inside a, which scores higher: no pixel left
    return Instances(masks, torch.tensor([1, 2, 1]), torch.tensor([0.9, 0.6, 0.3]))


def test_instance_records_agree_with_the_id_map():
    ids, records = instance_records(hand_instances(), NAMES)
    expected = np.zeros((6, 8), dtype=np.int64)
    expected[2:6, 4:8] = 2
    expected[1:4, 1:5] = 1  # a keeps the shared pixels; c is hidden and dropped
    assert np.array_equal(ids, expected)
    assert records == [
        {"id": 1, "class": 1, "class_name": "cell", "score": 0.9, "box": [1, 1, 5, 4], "area": 12},
        {"id": 2, "class": 2, "class_name": "blob", "score": 0.6, "box": [4, 2, 8, 6], "area": 14},
    ]


def test_renumbered_makes_ids_consecutive_in_order():
    ids, kept = renumbered(np.array([[0, 5, 5], [9, 0, 2]]))
    assert ids.tolist() == [[0, 2, 2], [3, 0, 1]] and kept.tolist() == [2, 5, 9]


def test_contours_keep_each_touching_instances_edge():
    ids = np.zeros((5, 6), dtype=np.int64)
    ids[1:4, 0:3], ids[1:4, 3:6] = 1, 2  # two 3 x 3 squares touching along a column
    contours = id_contours(ids)
    assert contours[2].tolist() == [True, False, True, True, False, True]  # border and seam
    assert not contours[0].any() and not contours[4].any()


def test_paint_and_mark_draw_fills_contours_and_marks():
    image = np.full((8, 8, 3), 100, np.uint8)
    ids = np.zeros((8, 8), dtype=np.int64)
    ids[2:6, 2:6] = 1
    colours = instance_colours(1)
    painted = paint_ids(image, ids)
    assert painted[2, 2].tolist() == colours[1].tolist()  # the contour, in full colour
    assert painted[0, 0].tolist() == [100, 100, 100]  # background untouched
    inner = 0.55 * 100 + 0.45 * colours[1].astype(np.float64)  # the fill: 45% the colour
    assert np.abs(painted[3, 3] - inner).max() <= 1  # uint8 truncates
    marked = mark_ids(painted, ids, np.array([False, True]), (255, 0, 0))
    assert marked[2, 2].tolist() == [255, 0, 0] and marked[1, 3].tolist() == [255, 0, 0]
    assert marked[3, 3].tolist() == painted[3, 3].tolist()  # inside stays the fill
    kept = dashed(np.ones((1, 12), dtype=bool))
    assert kept.tolist() == [[True] * 3 + [False] * 3 + [True] * 3 + [False] * 3]


def test_instance_colours_avoid_the_mark_colours():
    colours = instance_colours(200)[1:].astype(np.int64)
    red = (colours[:, 0] > 200) & (colours[:, 1] < 80) & (colours[:, 2] < 80)
    yellow = (colours[:, 0] > 200) & (colours[:, 1] > 180) & (colours[:, 2] < 80)
    assert not red.any() and not yellow.any()
    assert len({tuple(colour) for colour in colours[:20].tolist()}) == 20


def test_masks_are_resized_a_few_at_a_time_as_all_at_once(monkeypatch: pytest.MonkeyPatch):
    masks = torch.rand(5, 20, 30) > 0.6
    found = Instances(masks, torch.ones(5, dtype=torch.int64), torch.linspace(0.9, 0.5, 5))
    together = F.interpolate(masks[:, None].float(), (41, 59), mode="bilinear")[:, 0] > 0.5
    monkeypatch.setattr(instances_module, "RESIZE_CHUNK_PIXELS", 1200)  # two masks a chunk
    result = instances_module.resized(found, (41, 59))
    assert torch.equal(result.masks, together) and torch.equal(result.scores, found.scores)
