"""FCIS's post-processing in numpy alone: serve an exported FCIS with onnxruntime and numpy, no
torch. It mirrors FCIS.detect (models/instances/fcis.py) step for step, with the conventions of
rpn.py (anchors, box coding, IoU, NMS, proposals) and psroi.py (pooling, pasting, voting); the
tests check it against them. Input: one image's four raw maps, (1, C, h, w) as onnxruntime
returns them for a batch of one, or (C, h, w). Output: Detections at the image's size (H, W).

    objectness (A, h, w), anchor_deltas (4A, h, w)
      -> anchors decoded, clipped, >= min_size, best pre_nms, NMS 0.7, best test_rois   (R, 4)
    position_scores (2 k^2 K, h, w) pooled in each ROI to P x P bins                (R, K, 2, P, P)
      class logits: max(inside, outside), mean over bins (R, K); mask logits: in - out (R, K, P, P)
    position_boxes (4 k^2, h, w) pooled the same, mean over bins -> refined ROIs (BOX_STDS) (R, 4)
      -> scored again; both passes kept: boxes (2R, 4), softmax (2R, K), masks (2R, K, P, P)
      -> per class: score >= score_threshold, NMS; best max_detections over all classes  (M,)
      -> mask voting (ROIs at box IoU >= 0.5, thresholds 0.4) -> empty masks dropped (M, H, W)

The file imports numpy and the standard library only, so it can be copied next to a service:

    session = onnxruntime.InferenceSession("fcis.onnx", providers=["CPUExecutionProvider"])
    meta = {key.removeprefix("fcnseg."): json.loads(value)
            for key, value in session.get_modelmeta().custom_metadata_map.items()}
    names = [output.name for output in session.get_outputs()]
    maps = dict(zip(names, session.run(None, {"image": image[None]})))  # image (C, H, W)
    masks, classes, scores = detect(maps, image.shape[-2:], FcisSettings.from_metadata(meta))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

F32 = np.float32  # every step computes in float32, as the PyTorch code does
MAP_NAMES = ("objectness", "anchor_deltas", "position_scores", "position_boxes")
MAX_LOG_SCALE = math.log(1000.0 / 16.0)  # rpn.py: larger width deltas would overflow exp
# fcis()'s options that only the network or training read; a test checks that every other
# option of fcis() is a field of FcisSettings.
UNUSED_OPTIONS = frozenset(
    {"backbone", "backbone_weights", "width", "rpn_width", "train_rois", "hard_rois"}
)


@dataclass(frozen=True)
class FcisSettings:
    """What the post-processing needs; the defaults are fcis()'s and fcis.py's constants."""

    num_classes: int  # K, background included (at least 2)
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    stride: int = 16  # fcis()'s output_stride
    grid_size: int = 7
    mask_size: int = 21
    test_rois: int = 300
    score_threshold: float = 0.3
    nms_threshold: float = 0.3
    max_detections: int = 100
    pre_nms: int = 6000
    rpn_nms_threshold: float = 0.7
    min_size: float = 2.0
    box_stds: tuple[float, ...] = (0.2, 0.2, 0.5, 0.5)
    mask_threshold: float = 0.4
    merge_iou: float = 0.5

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> FcisSettings:
        """From an fcnseg export's metadata (keys without "fcnseg.", values JSON-decoded): its
        "model" entry holds the name, num_classes and the options given to fcis()."""
        spec = metadata["model"]
        if spec.get("name") != "fcis":
            raise ValueError(f"the model is {spec.get('name')!r}, not 'fcis'")
        options = {
            "stride" if key == "output_stride" else key: value
            for key, value in (spec.get("options") or {}).items()
            if key not in UNUSED_OPTIONS
        }
        if unknown := sorted(set(options) - set(cls.__dataclass_fields__)):
            raise ValueError(
                f"fcis options {unknown} are unknown to this fcis_numpy.py; take the file from "
                "the fcnseg version that exported the model"
            )
        for key, kind in (("anchor_sizes", int), ("anchor_ratios", float)):
            if key in options:
                options[key] = tuple(kind(value) for value in options[key])
        # One output class means one foreground class, as fcis() builds it.
        return cls(num_classes=max(int(spec["num_classes"]), 2), **options)


class Detections(NamedTuple):
    masks: np.ndarray  # (M, H, W) bool
    classes: np.ndarray  # (M,) int64, 1..K-1
    scores: np.ndarray  # (M,) float32, best first


def exp(values: np.ndarray) -> np.ndarray:
    """float32 exp through float64: torch's float32 exp is within 1 ulp of the correctly
    rounded value, numpy's float32 exp strays more often."""
    return np.exp(values.astype(np.float64)).astype(F32)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return F32(1) / (F32(1) + exp(-values))


def anchor_grid(settings: FcisSettings, height: int, width: int) -> np.ndarray:
    """(h*w*A, 4) anchors, row (i w + j) A + a: rpn.py's AnchorSettings.grid."""
    shapes = [
        (size / math.sqrt(ratio), size * math.sqrt(ratio))
        for size in settings.anchor_sizes
        for ratio in settings.anchor_ratios
    ]
    half = np.asarray(shapes, dtype=F32) / F32(2)  # (A, 2): half widths, half heights
    ys = (np.arange(height, dtype=F32) + F32(0.5)) * F32(settings.stride)
    xs = (np.arange(width, dtype=F32) + F32(0.5)) * F32(settings.stride)
    centres = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 1, 2)
    return np.concatenate([centres - half, centres + half], axis=-1).reshape(-1, 4)


def decode_boxes(references: np.ndarray, deltas: np.ndarray, stds: tuple[float, ...]) -> np.ndarray:
    """(R, 4) boxes moved by their (R, 4) deltas times `stds` (rpn.py's decode_boxes)."""
    deltas = deltas * np.asarray(stds, dtype=F32)
    size = references[:, 2:] - references[:, :2]
    centre = (references[:, 2:] + references[:, :2]) / F32(2) + deltas[:, :2] * size
    half = size * exp(np.minimum(deltas[:, 2:], F32(MAX_LOG_SCALE))) / F32(2)
    return np.concatenate([centre - half, centre + half], axis=1)


def clip_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    height, width = image_size
    return np.minimum(np.maximum(boxes, F32(0)), np.asarray([width, height] * 2, dtype=F32))


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(A, B) IoU of half-open continuous boxes; 0 where both are empty."""
    top_left = np.maximum(first[:, None, :2], second[None, :, :2])
    bottom_right = np.minimum(first[:, None, 2:], second[None, :, 2:])
    sides = np.maximum(bottom_right - top_left, F32(0))
    intersection = sides[..., 0] * sides[..., 1]  # (A, B)
    areas, other_areas = (
        np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], F32(0)), axis=1)
        for boxes in (first, second)
    )
    union = areas[:, None] + other_areas[None] - intersection
    return intersection / np.maximum(union, F32(1e-9))


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, limit: int) -> np.ndarray:
    """Indices of at most `limit` boxes, best first; a box overlapping a kept, better one by
    IoU above `threshold` is dropped. Ties keep their order (torch's stable sort)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    suppressed = np.zeros(len(order), dtype=bool)
    kept: list[int] = []
    for index in range(len(order)):
        if len(kept) == limit:
            break
        if suppressed[index]:
            continue
        kept.append(index)
        overlaps = box_iou(boxes[index : index + 1], boxes[index + 1 :])[0]
        suppressed[index + 1 :] |= overlaps > F32(threshold)
    return order[np.asarray(kept, dtype=np.int64)]


def propose(
    objectness: np.ndarray, deltas: np.ndarray, image_size: tuple[int, int], settings: FcisSettings
) -> np.ndarray:
    """(R, 4) proposals, best first, from (A, h, w) and (4A, h, w) maps (rpn.py's propose)."""
    anchors, height, width = objectness.shape
    logits = objectness.transpose(1, 2, 0).reshape(-1)  # (h*w*A,)
    deltas = deltas.reshape(anchors, 4, height, width).transpose(2, 3, 0, 1).reshape(-1, 4)
    grid = anchor_grid(settings, height, width)
    boxes = clip_boxes(decode_boxes(grid, deltas, (1.0,) * 4), image_size)
    large = np.flatnonzero((boxes[:, 2:] - boxes[:, :2] >= F32(settings.min_size)).all(1))
    best = large[np.argsort(-logits[large], kind="stable")[: settings.pre_nms]]
    kept = nms(boxes[best], sigmoid(logits[best]), settings.rpn_nms_threshold, settings.test_rois)
    return boxes[best][kept]


def bin_edges(
    starts: np.ndarray, ends: np.ndarray, pooled_size: int, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """(R, P) first and one-past-last feature cell of each bin along one axis (psroi.py)."""
    bins = np.maximum(ends - starts, F32(0.1)) / F32(pooled_size)
    edges = starts[:, None] + np.arange(pooled_size + 1, dtype=F32)[None] * bins[:, None]
    first = np.clip(np.floor(edges[:, :-1]).astype(np.int64), 0, limit)
    last = np.clip(np.ceil(edges[:, 1:]).astype(np.int64), 0, limit)
    return first, last


def position_sensitive_pool(
    maps: np.ndarray, boxes: np.ndarray, stride: int, grid_size: int, pooled_size: int
) -> np.ndarray:
    """(R, D, P, P) means of the cells under each bin of (D k^2, h, w) maps, read from bin
    (p, q)'s own position map; an empty bin is 0. All R ROIs at once."""
    channels, height, width = maps.shape
    # torch's float32 cumsum accumulates in float64 on the CPU: so does this table.
    rows = np.cumsum(maps, axis=-1, dtype=np.float64).astype(F32)
    table = np.pad(np.cumsum(rows, axis=-2, dtype=np.float64).astype(F32), ((0, 0), (1, 0), (1, 0)))
    cells = boxes / F32(stride)
    x0, x1 = bin_edges(cells[:, 0], cells[:, 2], pooled_size, width)  # (R, P) each
    y0, y1 = bin_edges(cells[:, 1], cells[:, 3], pooled_size, height)
    group = np.minimum(np.arange(pooled_size) * grid_size // pooled_size, grid_size - 1)
    position = group[:, None] * grid_size + group[None, :]  # (P, P)
    outputs = np.arange(channels // (grid_size * grid_size))
    channel = (outputs[:, None, None] * grid_size * grid_size + position)[None]  # (1, D, P, P)

    def corner(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return table[channel, ys[:, None, :, None], xs[:, None, None, :]]  # (R, D, P, P)

    sums = corner(y1, x1) - corner(y0, x1) - corner(y1, x0) + corner(y0, x0)
    areas = ((y1 - y0)[:, :, None] * (x1 - x0)[:, None, :])[:, None]  # (R, 1, P, P)
    return np.where(areas > 0, sums / np.maximum(areas, 1).astype(F32), F32(0))


def score_rois(
    maps: Mapping[str, np.ndarray], boxes: np.ndarray, settings: FcisSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class logits (R, K), mask logits (R, K, P, P) and box deltas (R, 4) of R ROIs."""
    layout = (settings.stride, settings.grid_size, settings.mask_size)
    size = settings.mask_size
    scores = position_sensitive_pool(maps["position_scores"], boxes, *layout)
    scores = scores.reshape(len(boxes), settings.num_classes, 2, size, size)  # outside | inside
    deltas = position_sensitive_pool(maps["position_boxes"], boxes, *layout)  # (R, 4, P, P)
    return (
        bin_mean(scores.max(axis=2)),
        scores[:, :, 1] - scores[:, :, 0],  # softmax over (outside, inside) = sigmoid of this
        bin_mean(deltas),
    )


def bin_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last two axes, summed in float64 (torch's float32 sum is blocked, so the
    last bit may differ whatever the order here)."""
    return values.mean(axis=(-2, -1), dtype=np.float64).astype(F32)


def softmax(logits: np.ndarray) -> np.ndarray:
    values = exp(logits - logits.max(axis=1, keepdims=True))
    return values / values.sum(axis=1, keepdims=True)


def select_detections(
    boxes: np.ndarray, probabilities: np.ndarray, settings: FcisSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per foreground class: ROIs scoring >= score_threshold, box NMS; then the best
    max_detections over all classes: ROI indices, classes, scores, best first."""
    usable = (boxes[:, 2:] - boxes[:, :2] >= F32(1)).all(1)  # a sub-pixel box has no mask
    limit = settings.max_detections
    chosen, classes = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for label in range(1, probabilities.shape[1]):
        scores = probabilities[:, label]
        candidates = np.flatnonzero(usable & (scores >= F32(settings.score_threshold)))
        kept = candidates[nms(boxes[candidates], scores[candidates], settings.nms_threshold, limit)]
        chosen.append(kept)
        classes.append(np.full(len(kept), label, dtype=np.int64))
    rois, labels = np.concatenate(chosen), np.concatenate(classes)
    scores = probabilities[rois, labels]
    order = np.argsort(-scores, kind="stable")[:limit]
    return rois[order], labels[order], scores[order]


def neighbour(coordinates: np.ndarray, offset: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixel below (offset 0) or above (1) each coordinate (pixel i's centre at i + 1/2),
    clamped into [0, limit), and its bilinear weight, 0 for a pixel outside."""
    shifted = coordinates - F32(0.5)
    low = np.floor(shifted)
    fraction = shifted - low
    index = low.astype(np.int64) + offset
    weight = fraction if offset else F32(1) - fraction
    return np.clip(index, 0, limit - 1), weight * ((index >= 0) & (index < limit))


def paste_masks(masks: np.ndarray, boxes: np.ndarray, window: tuple[int, ...]) -> np.ndarray:
    """(J, h, w) of (J, P, P) masks resized bilinearly (interpolate, align_corners=False) into
    their boxes over the pixels of `window` (x0, y0, x1, y1); 0 outside their boxes."""
    x0, y0, x1, y1 = window
    size = masks.shape[-1]
    axes = []
    for pixels, start, end in ((np.arange(y0, y1), 1, 3), (np.arange(x0, x1), 0, 2)):
        centres = pixels.astype(F32)[None] + F32(0.5)  # (1, n)
        low, high = boxes[:, start : start + 1], boxes[:, end : end + 1]
        inside = (centres >= low) & (centres < high)
        # Bin b spans [b, b + 1); samples past the outer bin centres take the edge bin.
        grid = (centres - low) / np.maximum(high - low, F32(1e-6)) * F32(size)
        axes.append((np.clip(grid, F32(0.5), F32(size - 0.5)), inside))
    (mask_ys, inside_y), (mask_xs, inside_x) = axes
    pasted = np.zeros((len(masks), y1 - y0, x1 - x0), dtype=F32)
    slots = np.arange(len(masks))[:, None, None]
    for row_offset in (0, 1):
        rows, row_weights = neighbour(mask_ys, row_offset, size)
        for col_offset in (0, 1):
            cols, col_weights = neighbour(mask_xs, col_offset, size)
            picked = masks[slots, rows[:, :, None], cols[:, None, :]]  # (J, h, w)
            pasted += (
                picked * (row_weights * inside_y)[:, :, None] * (col_weights * inside_x)[:, None, :]
            )
    return pasted


def covering_window(boxes: np.ndarray, image_size: tuple[int, int]) -> tuple[int, ...]:
    """The smallest integer window (x0, y0, x1, y1) inside the image holding every box."""
    height, width = image_size
    x0, y0 = max(math.floor(boxes[:, 0].min()), 0), max(math.floor(boxes[:, 1].min()), 0)
    x1, y1 = min(math.ceil(boxes[:, 2].max()), width), min(math.ceil(boxes[:, 3].max()), height)
    return x0, y0, max(x1, x0), max(y1, y0)


def vote_masks(
    boxes: np.ndarray,
    probabilities: np.ndarray,
    mask_logits: np.ndarray,
    chosen: np.ndarray,
    classes: np.ndarray,
    image_size: tuple[int, int],
    settings: FcisSettings,
) -> np.ndarray:
    """(M, H, W) bool: each detection's mask voted by the ROIs overlapping its box by IoU >=
    merge_iou, their masks of its class thresholded and weighted by their probability of it."""
    threshold = F32(settings.mask_threshold)
    voted = np.zeros((len(chosen), *image_size), dtype=bool)
    overlaps = box_iou(boxes[chosen], boxes)  # (M, 2R)
    for slot, label in enumerate(classes.tolist()):
        voters = np.flatnonzero(overlaps[slot] >= F32(settings.merge_iou))
        voters = voters if len(voters) else chosen[slot : slot + 1]
        weights = probabilities[voters, label]
        weights = weights / max(weights.sum(), F32(1e-12))
        x0, y0, x1, y1 = window = covering_window(boxes[voters], image_size)
        # Only the voters' masks of this class are ever read: their sigmoid alone is taken.
        pasted = paste_masks(sigmoid(mask_logits[voters, label]), boxes[voters], window)
        votes = ((pasted >= threshold).astype(F32) * weights[:, None, None]).sum(axis=0)
        voted[slot, y0:y1, x0:x1] = votes >= threshold
    return voted


def one_image(maps: Mapping[str, Any], settings: FcisSettings) -> dict[str, np.ndarray]:
    """The four maps as float32 (C, h, w), each checked against the settings' channels."""
    anchors, cells = len(settings.anchor_sizes) * len(settings.anchor_ratios), settings.grid_size**2
    channels = (anchors, 4 * anchors, 2 * cells * settings.num_classes, 4 * cells)
    found = {}
    for name, expected in zip(MAP_NAMES, channels, strict=True):
        values = np.asarray(maps[name], dtype=F32)
        values = values[0] if values.ndim == 4 and values.shape[0] == 1 else values
        if values.ndim != 3 or values.shape[0] != expected:
            raise ValueError(
                f"{name} is {np.shape(maps[name])}; these settings expect one image's "
                f"({expected}, h, w) or (1, {expected}, h, w): for image i of a batch, pass "
                "maps[name][i]"
            )
        found[name] = values
    return found


def detect(
    maps: Mapping[str, Any], image_size: tuple[int, int], settings: FcisSettings
) -> Detections:
    """One image's raw maps -> its detections at image_size (H, W), as FCIS.detect."""
    maps = one_image(maps, settings)
    image_size = (int(image_size[0]), int(image_size[1]))
    proposals = propose(maps["objectness"], maps["anchor_deltas"], image_size, settings)
    first = score_rois(maps, proposals, settings)
    refined = clip_boxes(decode_boxes(proposals, first[2], settings.box_stds), image_size)
    second = score_rois(maps, refined, settings)
    boxes = np.concatenate([proposals, refined])  # (2R, 4): both passes vote
    probabilities = softmax(np.concatenate([first[0], second[0]]))  # (2R, K)
    mask_logits = np.concatenate([first[1], second[1]])  # (2R, K, P, P)
    chosen, classes, scores = select_detections(boxes, probabilities, settings)
    voted = vote_masks(boxes, probabilities, mask_logits, chosen, classes, image_size, settings)
    kept = voted.any(axis=(1, 2))
    return Detections(voted[kept], classes[kept], scores[kept])
