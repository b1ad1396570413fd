"""The API of `fcnseg serve` through FastAPI's TestClient: the served mask against `fcnseg
predict`'s files, the JSON areas and instances (RLE checked with pycocotools), the limits and
their JSON errors, the bounded queue, and that no path on disk is reachable."""

from __future__ import annotations

import io
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcnseg
from fcnseg.cli import main
from fcnseg.inference import InferenceOptions
from fcnseg.models.instances import Instances
from tests.inference.test_instances import write_instance_checkpoint
from tests.serve.conftest import CLASS_NAMES, COLOURS, IMAGE_SIZE, png_array

REASON = "fcnseg serve needs its extra: pip install -e '.[serve]' (and httpx, in dev)"
pytest.importorskip("fastapi", reason=REASON)
pytest.importorskip("python_multipart", reason=REASON)
pytest.importorskip("httpx", reason=REASON)
with warnings.catch_warnings():  # starlette's note on httpx's successor, httpx2, at import
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from fcnseg.serve.app import create_app  # noqa: E402  (after the skips: needs fastapi)
from fcnseg.serve.limits import Limits  # noqa: E402
from fcnseg.serve.model import ServedModel, served_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@contextmanager
def api(
    model_path: Path,
    limits: Limits | None = None,
    options: InferenceOptions | None = None,
    backend: str = "auto",
) -> Iterator[TestClient]:
    """A client of the app serving `model_path`, built as `fcnseg serve` builds it."""
    predictor = fcnseg.load(model_path, device="cpu", options=options)
    app = create_app(served_model(predictor, model_path, backend), limits or Limits())
    with TestClient(app) as client:
        yield client


def post(client: TestClient, data: bytes, query: str = "", name: str = "photo.png") -> object:
    return client.post(f"/predict{query}", files={"image": (name, data, "image/png")})


def predicted_by_cli(model_path: Path, image: Path, out: Path, *flags: str) -> Path:
    """The mask `fcnseg predict` writes for `image`."""
    arguments = ["predict", str(model_path), str(image), "--out", str(out), "--no-progress"]
    assert main([*arguments, *flags]) == 0
    return out / f"{image.stem}.png"


@pytest.mark.parametrize("flags", [(), ("--mode", "tiled", "--tile-size", "32")])
def test_the_served_mask_is_predicts_mask(
    checkpoint: Path, image_file: Path, tmp_path: Path, flags: tuple[str, ...]
):
    """Whole, and in row bands of 32-pixel tiles: the same pixels, mode and palette."""
    expected, mode, palette = png_array(predicted_by_cli(checkpoint, image_file, tmp_path, *flags))
    options = InferenceOptions(mode="tiled", tile_size=32) if flags else None
    with api(checkpoint, options=options) as client:
        response = post(client, image_file.read_bytes())
        areas = post(client, image_file.read_bytes(), "?format=json").json()
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    served, served_mode, served_palette = png_array(response.content)
    assert served.shape == IMAGE_SIZE and mode == served_mode == "P"
    assert np.array_equal(served, expected)
    assert served_palette[:9] == palette[:9] == [value for colour in COLOURS for value in colour]
    counts = np.bincount(expected.ravel(), minlength=3)
    assert (counts > 0).all(), "the tiny model should give every class some pixels"
    assert [c["pixels"] for c in areas["classes"]] == counts.tolist()
    assert [c["name"] for c in areas["classes"]] == CLASS_NAMES
    percents = [c["percent"] for c in areas["classes"]]
    assert percents == pytest.approx((100 * counts / counts.sum()).tolist(), abs=1e-3)
    assert (areas["width"], areas["height"]) == (IMAGE_SIZE[1], IMAGE_SIZE[0])


def test_an_export_beside_the_checkpoint_is_served_by_onnxruntime(tmp_path: Path, image_file: Path):
    pytest.importorskip("onnxruntime", reason="the export extra: pip install -e '.[export]'")
    from tests.serve.conftest import write_semantic_checkpoint

    model_path = write_semantic_checkpoint(tmp_path / "best.pt")
    assert main(["export", str(model_path)]) == 0
    expected, _, _ = png_array(predicted_by_cli(model_path, image_file, tmp_path / "out"))
    with api(model_path) as client:
        assert client.get("/model").json()["backend"] == "onnxruntime (best.onnx)"
        served, _, _ = png_array(post(client, image_file.read_bytes()).content)
        torch_backend = served_model(fcnseg.load(model_path, device="cpu"), model_path, "torch")
        assert torch_backend.backend.startswith("torch")
    assert np.array_equal(served, expected)


def test_model_and_health_describe_the_server(checkpoint: Path):
    limits = Limits(max_upload_bytes=5 * 2**20, max_pixels=10**6, max_queue=3)
    with api(checkpoint, limits) as client:
        health = client.get("/health").json()
        described = client.get("/model").json()
    assert health == {"status": "ok", "queue": 0, "max_queue": 3}
    assert described["name"] == "unet" and described["run"] == "tiny"
    assert described["task"] == "semantic" and described["classes"] == CLASS_NAMES
    assert described["palette"] == COLOURS and described["input_scale"] == 1.0
    assert described["backend"].startswith("torch (") and described["file"] == "best.pt"
    assert described["limits"] == {
        "max_upload_bytes": 5 * 2**20,
        "max_pixels": 10**6,
        "max_queue": 3,
    }


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header promises width x height pixels, followed by one tiny IDAT: what a
    decompression bomb looks like to a server that reads the header first."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))


def test_limits_and_bad_files_get_a_json_error(checkpoint: Path, image_file: Path):
    good = image_file.read_bytes()
    limits = Limits(max_upload_bytes=len(good) + 100, max_pixels=IMAGE_SIZE[0] * IMAGE_SIZE[1])
    with api(checkpoint, limits) as client:
        cases = {
            "not an image": post(client, b"hello, not an image", name="notes.txt"),
            "truncated": post(client, good[: len(good) // 2]),
            "no field": client.post("/predict", files={"picture": ("a.png", good, "image/png")}),
            "bad format": post(client, good, "?format=xml"),
            "too many bytes": post(client, good + b"\0" * 200),
            "huge body": post(client, b"\0" * (len(good) + 70_000)),
            "too many pixels": post(client, png_header_only(IMAGE_SIZE[1] + 1, IMAGE_SIZE[0])),
        }
        started = time.perf_counter()
        bomb = post(client, png_header_only(100_000, 100_000))  # 10^10 pixels in 60 bytes
        bomb_seconds = time.perf_counter() - started
        still_serving = post(client, good)
    statuses = {name: response.status_code for name, response in cases.items()}
    assert statuses == {
        "not an image": 415,
        "truncated": 400,
        "no field": 400,
        "bad format": 400,
        "too many bytes": 413,
        "huge body": 413,
        "too many pixels": 413,
    }
    for response in [*cases.values(), bomb]:
        error = response.json()["error"]
        assert isinstance(error, str) and error.endswith((".", "predict")), error
        assert "fcnseg-serve" not in error and "/tmp" not in error  # no server path told
    assert "'photo.png'" in cases["truncated"].json()["error"]
    assert "--max-pixels" in cases["too many pixels"].json()["error"]
    assert bomb.status_code == 413 and bomb_seconds < 1.0
    assert still_serving.status_code == 200


def test_a_full_queue_answers_503_while_the_loop_stays_responsive(
    checkpoint: Path, image_file: Path
):
    """One request holds the single worker; with --max-queue 1 the next is refused at once,
    and /health still answers: inference does not block the event loop."""
    release, entered = threading.Event(), threading.Event()
    predictor = fcnseg.load(checkpoint, device="cpu")
    model = ServedModel(predictor, "torch")
    original = model.predict

    def slow_predict(upload: object) -> object:
        entered.set()
        release.wait(10)
        return original(upload)

    model.predict = slow_predict  # type: ignore[method-assign]
    results: dict[str, object] = {}
    with TestClient(create_app(model, Limits(max_queue=1))) as client:
        first = threading.Thread(
            target=lambda: results.update(first=post(client, image_file.read_bytes()))
        )
        first.start()
        assert entered.wait(10)
        busy = post(client, image_file.read_bytes())
        health = client.get("/health").json()
        release.set()
        first.join(10)
        after = post(client, image_file.read_bytes())
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert "--max-queue" in busy.json()["error"]
    assert health == {"status": "ok", "queue": 1, "max_queue": 1}
    assert results["first"].status_code == 200 and after.status_code == 200


def test_no_path_on_disk_is_reachable(checkpoint: Path):
    with api(checkpoint) as client:
        for path in (
            "/docs",
            "/redoc",
            "/openapi.json",
            "/page.html",
            "/static/page.html",
            "/best.pt",
            "/..%2f..%2fetc%2fpasswd",
            "/%2e%2e/%2e%2e/etc/passwd",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert "there is no GET" in response.json()["error"]
        assert client.post("/").status_code == 405
        assert client.get("/predict").status_code == 405


def test_the_page_is_one_file_with_no_external_asset(checkpoint: Path):
    with api(checkpoint) as client:
        response = client.get("/")
    page = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "http://" not in page and "https://" not in page and "@import" not in page
    assert "<script src" not in page and "<link" not in page
    for needed in ('id="legend"', 'id="opacity"', 'id="download"', 'type="file"', "drop"):
        assert needed in page


def hand_instances(height: int, width: int) -> Instances:
    """Three instances: a (class 1, 0.9) and b (class 2, 0.6) overlap, where a wins; c (class
    1, 0.3) touches the image's last column and row."""
    masks = torch.zeros(3, height, width, dtype=torch.bool)
    masks[0, 3:20, 5:30] = True
    masks[1, 10:35, 25:50] = True
    masks[2, 38:, 55:] = True
    return Instances(masks, torch.tensor([1, 2, 1]), torch.tensor([0.9, 0.6, 0.3]))


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools
def test_instances_come_with_boxes_scores_and_coco_rle(
    tmp_path: Path, image_file: Path, monkeypatch: pytest.MonkeyPatch
):
    mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools: the dev extra")
    model_path = write_instance_checkpoint(tmp_path / "instances.pt")
    predictor = fcnseg.load(model_path, device="cpu")
    height, width = IMAGE_SIZE
    monkeypatch.setattr(predictor, "predict_image", lambda image: hand_instances(height, width))
    app = create_app(served_model(predictor, model_path), Limits())
    with TestClient(app) as client:
        described = client.get("/model").json()
        ids, mode, _ = png_array(post(client, image_file.read_bytes()).content)
        reply = post(client, image_file.read_bytes(), "?format=json").json()
    assert described["task"] == "instance" and described["name"] == "instancefcn"
    assert mode.startswith("I;16") and ids.shape == IMAGE_SIZE
    expected = np.zeros(IMAGE_SIZE, dtype=np.int64)
    expected[10:35, 25:50] = 2
    expected[3:20, 5:30] = 1  # a keeps what it shares with b
    expected[38:, 55:] = 3
    assert np.array_equal(ids, expected)
    found = reply["instances"]
    assert [(i["id"], i["class"], i["score"]) for i in found] == [
        (1, 1, 0.9),
        (2, 2, 0.6),
        (3, 1, 0.3),
    ]
    for instance in found:
        mask = expected == instance["id"]
        reference = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert instance["rle"]["counts"] == reference["counts"].decode("ascii")
        assert instance["rle"]["size"] == [height, width]
        decoded = mask_api.decode(
            {"size": [height, width], "counts": instance["rle"]["counts"].encode()}
        )
        assert np.array_equal(decoded.astype(bool), mask)
        x, y, box_width, box_height = mask_api.toBbox(reference).tolist()
        assert instance["box"] == [x, y, x + box_width, y + box_height]
        assert instance["area"] == int(mask.sum()) == int(mask_api.area(reference))
    pixels = [
        int((expected == 0).sum()),
        int(np.isin(expected, [1, 3]).sum()),
        int((expected == 2).sum()),
    ]
    assert [c["pixels"] for c in reply["classes"]] == pixels


def test_an_instance_model_is_served_end_to_end(tmp_path: Path, image_file: Path):
    """No stand-in: the untrained InstanceFCN's own output, whatever it finds."""
    model_path = write_instance_checkpoint(tmp_path / "instances.pt")
    with api(model_path) as client:
        response = post(client, image_file.read_bytes(), "?format=json&include_mask=true")
    reply = response.json()
    assert response.status_code == 200 and isinstance(reply["instances"], list)
    import base64

    ids, _, _ = png_array(base64.b64decode(reply["mask_png"]))
    assert ids.shape == IMAGE_SIZE and int(ids.max()) == len(reply["instances"])
    assert sum(c["pixels"] for c in reply["classes"]) == IMAGE_SIZE[0] * IMAGE_SIZE[1]


def test_bad_limits_are_refused_in_the_flags_words():
    with pytest.raises(fcnseg.FcnsegError, match="--max-upload-mb"):
        Limits.from_flags(float("nan"), 10, 1)
    with pytest.raises(fcnseg.FcnsegError, match="--max-queue"):
        Limits.from_flags(1, 10, 0)


def test_a_png_from_a_jpeg_upload_is_the_images_size(checkpoint: Path, image_file: Path):
    buffer = io.BytesIO()
    Image.open(image_file).convert("RGB").save(buffer, format="JPEG")
    with api(checkpoint) as client:
        response = post(client, buffer.getvalue(), name="photo.jpg")
    mask, _, _ = png_array(response.content)
    assert response.status_code == 200 and mask.shape == IMAGE_SIZE
