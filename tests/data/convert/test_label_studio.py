"""Label Studio JSON exports: brush labels in its own RLE and polygon labels in per cent, into
fcnseg's layouts pixel for pixel; unknown labels, missing images and broken RLE named."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from fcnseg.commands.convert import convert
from fcnseg.data.convert.brush import decode_brush, decode_values
from fcnseg.errors import FcnsegError
from tests.data.convert.exports import (
    HEIGHT,
    OBJECTS,
    WIDTH,
    class_mask,
    id_map,
    read_png,
    rectangle,
    write_images,
    write_json,
)

SIZES = (3, 4, 8, 16)  # the run-length field sizes Label Studio writes


def encode_values(values: list[int], word: int = 8) -> list[int]:
    """Label Studio's brush RLE, written from the format's description (see brush.py): runs of
    two or more as repeat blocks, single values gathered into sequence blocks."""
    bits: list[int] = []

    def put(value: int, count: int) -> None:
        bits.extend((value >> (count - 1 - i)) & 1 for i in range(count))

    def block(repeated: bool, length: int) -> None:
        field = next(i for i, size in enumerate(SIZES) if length - 1 < 2**size)
        put(int(repeated), 1)
        put(field, 2)
        put(length - 1, SIZES[field])

    def sequence(values: list[int]) -> None:
        block(False, len(values))
        for value in values:
            put(value, word)

    put(len(values), 32)
    put(word - 1, 5)
    for size in SIZES:
        put(size - 1, 4)
    starts = [0, *(i for i in range(1, len(values)) if values[i] != values[i - 1]), len(values)]
    singles: list[int] = []
    for start, end in pairwise(starts):
        if end - start == 1:
            singles.append(values[start])
            continue
        if singles:
            sequence(singles)
            singles = []
        for offset in range(start, end, 2 ** SIZES[-1]):  # a 16-bit length holds 65536 at most
            block(True, min(end, offset + 2 ** SIZES[-1]) - offset)
            put(values[start], word)
    if singles:
        sequence(singles)
    bits += [0] * (-len(bits) % 8)
    return [int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8)]


def brush_rle(mask: np.ndarray) -> list[int]:
    """A brush region as Label Studio stores it: RGBA pixels, alpha 255 where painted."""
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = (255, 0, 0, 255)
    return encode_values(rgba.ravel().tolist())


def test_decoder_reads_a_hand_written_stream():
    # 3 values, word 8, sizes 3 4 8 16; one block: repeat, field 0, length 3 - 1, value 5
    bits = "00000000000000000000000000000011" + "00111" + "0010001101111111" + "100010"
    bits += "00000101"
    bits += "0" * (-len(bits) % 8)
    stream = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode_values(stream).tolist() == [5, 5, 5]
    assert encode_values([5, 5, 5]) == stream


def test_brush_masks_round_trip_through_both_block_kinds():
    rng = np.random.default_rng(0)
    mask = rng.random((HEIGHT, WIDTH)) < 0.5  # short runs: sequence blocks
    mask[:4] = True  # a long run: repeat blocks
    assert (decode_brush(brush_rle(mask), HEIGHT, WIDTH) == mask).all()
    faint = np.zeros((HEIGHT, WIDTH, 4), np.uint8)
    faint[1, 2] = (255, 0, 0, 1)  # any alpha above 0 is in, as Label Studio's converter reads it
    faint[3, 4] = (255, 0, 0, 0)  # colour without alpha is not
    decoded = decode_brush(encode_values(faint.ravel().tolist()), HEIGHT, WIDTH)
    assert np.argwhere(decoded).tolist() == [[1, 2]]
    values = rng.integers(0, 256, 70000).tolist()  # 70000 > 65536: split repeat blocks too
    assert decode_values(encode_values([7] * 70000 + values)).tolist() == [7] * 70000 + values
    with pytest.raises(ValueError, match="not 4 x 8 x 9"):
        decode_brush(brush_rle(mask), HEIGHT, WIDTH - 1)
    with pytest.raises(ValueError, match="ends after"):
        decode_brush(brush_rle(mask)[:20], HEIGHT, WIDTH)


def percent(region: np.ndarray) -> list[list[float]]:
    rows, columns = np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))
    top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    corners = [(left, top), (right, top), (right, bottom), (left, bottom)]
    return [[x * 100 / WIDTH, y * 100 / HEIGHT] for x, y in corners]


def region(kind: str, mask: np.ndarray, label: str, number: int) -> dict:
    value = (
        {"format": "rle", "rle": brush_rle(mask), "brushlabels": [label]}
        if kind == "brush"
        else {"points": percent(mask), "closed": True, "polygonlabels": [label]}
    )
    return {
        "id": f"r{number}",
        "type": f"{kind}labels",
        "value": value,
        "original_width": WIDTH,
        "original_height": HEIGHT,
        "image_rotation": 0,
    }


ADDRESSES = {
    "a": "/data/upload/1/1a2b3c4d-a.png",
    "b": "/data/local-files/?d=photos/b.png",
    "c": "http://example.com/media/c.png",
}
KINDS = {"a": ["brush", "polygon"], "b": ["brush", "brush"], "c": ["polygon"]}


def ls_export(root: Path) -> Path:
    tasks = []
    for number, name in enumerate(OBJECTS, start=1):
        regions = [
            region(kind, mask, ["", "cat", "dog"][label], index)
            for index, ((mask, label), kind) in enumerate(
                zip(OBJECTS[name], KINDS[name], strict=True)
            )
        ]
        annotations = [{"id": number, "result": regions, "was_cancelled": False}]
        tasks.append({"id": number, "data": {"image": ADDRESSES[name]}, "annotations": annotations})
    tasks[2]["annotations"].insert(0, {"id": 9, "result": [], "was_cancelled": True})
    tasks[2]["annotations"][1]["result"].append(
        {"id": "box", "type": "rectanglelabels", "value": {}}
    )
    tasks.append({"id": 4, "data": {"image": "/data/upload/1/d.png"}, "annotations": []})
    write_images(root / "photos", ["a.png", "b.png", "c.png"])
    return write_json(root / "export.json", tasks)


def test_brush_and_polygon_labels_pixel_for_pixel(tmp_path: Path):
    source = ls_export(tmp_path / "ls")
    images = str(tmp_path / "ls" / "photos")
    text, ready = convert("label-studio", str(source), str(tmp_path / "out"), images=images)
    for name in OBJECTS:
        assert (read_png(tmp_path / "out" / "masks" / f"{name}.png") == class_mask(name)).all()
    assert ready and 'class_names: ["background", "cat", "dog"]' in text
    assert "1 tasks have no annotation" in text and "1 rectanglelabels regions left out" in text


def test_instances(tmp_path: Path):
    source = ls_export(tmp_path / "ls")
    images = str(tmp_path / "ls" / "photos")
    convert("label-studio", str(source), str(tmp_path / "out"), task="instance", images=images)
    assert (read_png(tmp_path / "out" / "train" / "masks" / "a.png") == id_map("a")).all()
    table = json.loads((tmp_path / "out" / "val" / "classes" / "b.json").read_text())
    assert table == {"1": 1, "2": 1}


def test_unknown_label_missing_image_and_broken_rle(tmp_path: Path):
    source = ls_export(tmp_path / "ls")
    images = tmp_path / "ls" / "photos"
    with pytest.raises(FcnsegError, match=r"labelled 'dog', which is not among .*'dogs'"):
        convert(
            "label-studio",
            str(source),
            str(tmp_path / "out"),
            images=str(images),
            classes="cat,dogs",
        )
    (images / "c.png").unlink()
    with pytest.raises(FcnsegError, match=r"1 of the 3 annotated images .*\(/media/c.png\)"):
        convert("label-studio", str(source), str(tmp_path / "out"), images=str(images))
    write_images(images, ["c.png"])
    tasks = json.loads(source.read_text())
    tasks[1]["annotations"][0]["result"][0]["value"]["rle"] = [0, 0, 1]
    source.write_text(json.dumps(tasks))
    with pytest.raises(
        FcnsegError, match="task 2 region r0 has a brush RLE that cannot be decoded"
    ):
        convert("label-studio", str(source), str(tmp_path / "out"), images=str(images))
    assert not (tmp_path / "out").exists()


def test_overlapping_brush_and_polygon(tmp_path: Path):
    big, small = rectangle(0, 8, 0, 10), rectangle(2, 4, 2, 5)
    results = [region("polygon", small, "dog", 0), region("brush", big, "cat", 1)]
    tasks = [{"id": 1, "data": {"image": "a.png"}, "annotations": [{"result": results}]}]
    write_images(tmp_path / "ls", ["a.png", "b.png"])
    tasks.append({"id": 2, "data": {"image": "b.png"}, "annotations": [{"result": []}]})
    source = write_json(tmp_path / "ls" / "export.json", tasks)
    text, _ = convert("label-studio", str(source), str(tmp_path / "out"))
    expected = np.ones((HEIGHT, WIDTH), np.uint8)
    expected[2:4, 2:5] = 2
    assert (read_png(tmp_path / "out" / "masks" / "a.png") == expected).all()
    assert (read_png(tmp_path / "out" / "masks" / "b.png") == 0).all()  # annotated, empty
    assert "task 1 region r0 (dog) and task 1 region r1 (cat) overlap on 6 pixels" in text
