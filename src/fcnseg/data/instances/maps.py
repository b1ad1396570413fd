"""Instance maps on disk, and the (2, H, W) target the instance task trains on.

    instance map   one channel of IDs: 8- or 16-bit PNG, TIFF of any integer type (or whole
                   floats), or palette PNG (the index is the ID); 0 = background, IDs need not
                   be contiguous. Read with `np.array(Image.open(...))` or tifffile, never
                   `.convert("L")`, which would cut 16-bit IDs to 8 bits.
    class map      classes/<name>.png: a map of the same size whose pixel is the class (1..C) of
                   the instance there; every pixel of one instance must carry one class
    class table    classes/<name>.json: {"<id>": class, ...} for every ID of the map
    void mask      void/<name>.png: nonzero = void. Void wins over an instance: its pixels are
                   neither learned nor scored (ID 0, class ignore_index). A separate mask rather
                   than a reserved ID (such as 65535) because it works with 8-bit maps too and
                   never takes an ID from a dataset that has that many objects.

Without a class map or table every instance is class 1 (one-class data such as nuclei).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fcnseg.data.decoding import open_image, read_tiff_page
from fcnseg.errors import FcnsegError

TIFF_SUFFIXES = (".tif", ".tiff")
ONE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "F")


def read_id_map(path: Path, what: str = "instance map") -> np.ndarray:
    """(H, W) IDs as stored (uint8, uint16, int32, ...): one channel of whole numbers >= 0."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        raise FcnsegError(
            f"{what} {path} is a JPEG, whose lossy compression changes IDs at every edge; save "
            "it as PNG or TIFF."
        )
    if path.suffix.lower() in TIFF_SUFFIXES:
        array, mode = read_tiff_page(path, what, one_page=True), "TIFF"
    else:
        with open_image(path, what) as image:
            array, mode = np.array(image), image.mode
    if array.ndim != 2 or (mode != "TIFF" and mode not in ONE_CHANNEL_MODES):
        shape = " x ".join(str(side) for side in array.shape)
        found = f"shape {shape}" if mode == "TIFF" else f"mode {mode}, shape {shape}"
        raise FcnsegError(
            f"{what} {path} has {found}; accepted: one channel of whole numbers (8- or 16-bit "
            "greyscale PNG, palette PNG, one-page TIFF). A colour picture of the objects cannot "
            "be read as IDs: export the ID map itself."
        )
    return _whole_numbers(array, path, what)


def _whole_numbers(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    """The array unchanged when its values are whole and >= 0, else an error naming them."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        fractional = ~np.isfinite(array) | (array != np.round(array))
        if fractional.any():
            raise FcnsegError(
                f"{what} {path} holds {int(fractional.sum())} pixels that are not whole numbers "
                f"(e.g. {array[fractional][0]}); IDs and classes are integers: save them as an "
                "integer image, not an interpolated or resized one."
            )
    elif array.dtype.kind not in "ui":
        raise FcnsegError(f"{what} {path} stores {array.dtype} values; save integer IDs.")
    if (array < 0).any():
        raise FcnsegError(
            f"{what} {path} has negative values (smallest {array.min()}); IDs and classes are "
            "0 (background) or positive."
        )
    return array


def read_void(path: Path) -> np.ndarray:
    """(H, W) bool: the pixels a void mask marks (any nonzero value)."""
    return read_id_map(path, "void mask") != 0


def read_class_table(path: Path) -> dict[int, int]:
    """{instance ID: class} from a JSON object {"<id>": class}."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FcnsegError(f"cannot read class table {path}: {error}") from None
    if not isinstance(table, dict):
        raise FcnsegError(
            f"class table {path} holds a {type(table).__name__}; accepted: an object "
            '{"<instance id>": class}, e.g. {"1": 2, "2": 1}.'
        )
    classes = {}
    for key, value in table.items():
        if not str(key).isdigit() or not isinstance(value, int) or isinstance(value, bool):
            raise FcnsegError(
                f"class table {path} has the entry {key!r}: {value!r}; accepted: an instance "
                'ID as a string of digits and a whole-number class, e.g. "3": 1.'
            )
        classes[int(key)] = value
    return classes


def classes_from_map(ids: np.ndarray, class_map: np.ndarray, path: Path) -> dict[int, int]:
    """{instance ID: class} read under each instance; one instance over two classes is an error."""
    inside = ids > 0
    pairs = np.unique(np.stack([ids[inside], class_map[inside]]).astype(np.int64), axis=1)
    instances, first = np.unique(pairs[0], return_index=True)
    if len(instances) != pairs.shape[1]:
        split = int(pairs[0][np.flatnonzero(pairs[0][1:] == pairs[0][:-1])[0]])
        found = pairs[1][pairs[0] == split]
        counts = [int(((ids == split) & (class_map == value)).sum()) for value in found]
        shares = ", ".join(f"class {v} on {c} pixels" for v, c in zip(found, counts, strict=True))
        raise FcnsegError(
            f"class map {path} disagrees with its instance map: instance {split} covers {shares}; "
            "each instance has one class, so every pixel of it must carry the same value."
        )
    return dict(zip(instances.tolist(), pairs[1][first].tolist(), strict=True))


def build_target(
    ids: np.ndarray,
    classes: dict[int, int] | None,
    void: np.ndarray | None,
    ignore_index: int,
    num_classes: int,
    source: Path | str,
) -> np.ndarray:
    """(2, H, W) int64: IDs and the class under each; void pixels become ID 0, ignore_index."""
    ids = ids.astype(np.int64)
    present = np.unique(ids[ids > 0]).tolist()
    lookup = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int64)
    for instance in present:
        if classes is None:
            lookup[instance] = 1  # one-class data
            continue
        if instance not in classes:
            raise FcnsegError(
                f"the class table of {source} gives no class for instance {instance}; give one "
                "for every ID of the map."
            )
        lookup[instance] = _checked_class(classes[instance], instance, num_classes, source)
    target = np.stack([ids, lookup[ids]])  # (2, H, W)
    if void is not None:  # the same size as ids, checked by the caller that knows both paths
        target[0][void], target[1][void] = 0, ignore_index
    return target


def _checked_class(value: int, instance: int, num_classes: int, source: Path | str) -> int:
    if not 1 <= value < num_classes:
        raise FcnsegError(
            f"{source} gives instance {instance} the class {value}; accepted: 1..{num_classes - 1}"
            f" (data.num_classes is {num_classes}, class 0 is background). Raise data.num_classes "
            "or fix the class."
        )
    return value


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]} (width x height)"


def check_same_size(
    first: np.ndarray, second: np.ndarray, first_path: Path, second_path: Path
) -> None:
    """Image, instance map, class map and void mask of one item must share their size."""
    if first.shape[:2] != second.shape[:2]:
        raise FcnsegError(
            f"{second_path} is {_size(second)} but {first_path} is {_size(first)}; they must match."
        )


def touching_pairs(ids: np.ndarray) -> list[tuple[int, int]]:
    """Sorted (a, b), a < b: the instances with 4-adjacent pixels (background does not count)."""
    ids = np.asarray(ids)
    found = [
        np.stack([ids[:, :-1].ravel(), ids[:, 1:].ravel()]),  # left-right neighbours
        np.stack([ids[:-1, :].ravel(), ids[1:, :].ravel()]),  # top-bottom neighbours
    ]
    pairs = np.concatenate(found, axis=1).astype(np.int64)
    pairs = pairs[:, (pairs[0] != pairs[1]) & (pairs[0] > 0) & (pairs[1] > 0)]
    pairs = np.unique(np.sort(pairs, axis=0), axis=1)
    return [(int(a), int(b)) for a, b in pairs.T]
