"""What `fcnseg serve` accepts, checked before any work is spent on a request.

    body         counted as it arrives: past --max-upload-mb the request is refused (413) before
                 the rest is read; a Content-Length over the limit is refused before any of it
    image header Pillow reads the format and size without decoding a pixel, so a decompression
                 bomb (a small file of billions of pixels) is refused at once (413) past
                 --max-pixels; a file that is not a PNG, JPEG, BMP, TIFF or WebP image gets 415
                 (only those decoders are tried: Pillow's others, EPS through Ghostscript among
                 them, never see an upload)
    queue        at most --max-queue requests wait for or run inference, on one worker thread;
                 one more gets 503 with Retry-After rather than a backlog that grows without end

Every refusal is an ApiError: an HTTP status and one sentence, which the app sends as
{"error": "..."}.
"""

from __future__ import annotations

import asyncio
import io
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from fcnseg.errors import FcnsegError

if TYPE_CHECKING:  # starlette is imported where it is used: Limits must load without the extra
    from starlette.requests import Request
    from starlette.types import Message, Receive

# The decoders an upload may reach: fcnseg.data.images.IMAGE_SUFFIXES' formats, by Pillow name.
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
FORM_OVERHEAD = 64 * 1024  # bytes of multipart boundaries and headers allowed beyond the file
FIELD = "image"  # the multipart field that holds the upload
Result = TypeVar("Result")


class ApiError(Exception):
    """A request refused: the HTTP status and the sentence sent back as {"error": ...}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Limits:
    """The server's bounds (the flags --max-upload-mb, --max-pixels, --max-queue)."""

    max_upload_bytes: int = 32 * 2**20
    max_pixels: int = 50_000_000
    max_queue: int = 16

    def __post_init__(self) -> None:
        if self.max_upload_bytes < 1 or self.max_pixels < 1 or self.max_queue < 1:
            raise FcnsegError(
                f"--max-upload-mb, --max-pixels and --max-queue must be positive, got "
                f"{self.max_upload_bytes / 2**20:g} MB, {self.max_pixels} pixels and "
                f"{self.max_queue} requests; the defaults are 32, 50000000 and 16."
            )

    @classmethod
    def from_flags(cls, max_upload_mb: float, max_pixels: int, max_queue: int) -> Limits:
        upload = max_upload_mb * 2**20 if math.isfinite(max_upload_mb) else -1
        return cls(math.floor(upload), max_pixels, max_queue)

    def describe(self) -> dict[str, int]:
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_queue": self.max_queue,
        }


@dataclass(frozen=True)
class Upload:
    """An uploaded image's bytes, the name its sender gave it, and what its header says."""

    data: bytes
    filename: str
    format: str = ""
    width: int = 0
    height: int = 0


def too_large(size: int, limits: Limits) -> ApiError:
    return ApiError(
        413,
        f"the upload is {size / 2**20:.3g} MB or more, over this server's limit of "
        f"{limits.max_upload_bytes / 2**20:.3g} MB (fcnseg serve --max-upload-mb); send a "
        "smaller or more compressed image.",
    )


def counted(receive: Receive, limit: int, limits: Limits) -> Receive:
    """`receive` that refuses (ApiError 413) as soon as more than `limit` body bytes arrived."""
    total = 0

    async def receive_counted() -> Message:
        nonlocal total
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise too_large(total, limits)
        return message

    return receive_counted


async def read_upload(request: Request, limits: Limits) -> Upload:
    """The bytes of the multipart field FIELD, read under the upload limit."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    limit = limits.max_upload_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limits)
    bounded = Request(request.scope, counted(request.receive, limit, limits))
    try:
        form = await bounded.form(max_files=1, max_fields=8)
    except HTTPException as error:  # python-multipart's refusal of a malformed form
        message = f"the upload is not a readable multipart form ({error.detail})."
        raise ApiError(400, message) from None
    upload = form.get(FIELD)
    if not isinstance(upload, UploadFile):
        await form.close()
        raise ApiError(
            400,
            f"POST /predict takes the image as the multipart/form-data field '{FIELD}', which "
            "this request lacks; for example: curl -F image=@photo.png http://HOST:PORT/predict",
        )
    data = await upload.read()
    await form.close()
    if len(data) > limits.max_upload_bytes:
        raise too_large(len(data), limits)
    name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1][:100]
    return Upload(data, name or "upload")


def read_header(upload: Upload, limits: Limits) -> Upload:
    """The upload with its format and size from its header (no pixel decoded), refused when it
    is not an accepted image (415) or has more than max_pixels pixels (413)."""
    try:
        with Image.open(io.BytesIO(upload.data), formats=ACCEPTED_FORMATS) as image:
            image_format, (width, height) = image.format or "", image.size
    except Image.DecompressionBombError as error:  # Pillow's own bound, past twice its limit
        raise ApiError(413, f"'{upload.filename}' has too many pixels to read: {error}") from None
    except Exception:  # any decoder's complaint about a header means the same to the sender
        raise ApiError(
            415,
            f"'{upload.filename}' ({len(upload.data)} bytes) is not an image this server reads; "
            f"send a {', '.join(ACCEPTED_FORMATS)} file.",
        ) from None
    if width * height > limits.max_pixels:
        raise ApiError(
            413,
            f"'{upload.filename}' is {width} x {height} = {width * height:,} pixels, over this "
            f"server's limit of {limits.max_pixels:,} (fcnseg serve --max-pixels); scale it down.",
        )
    return Upload(upload.data, upload.filename, image_format, width, height)


class WorkQueue:
    """Inference one request at a time on a single worker thread, so the event loop stays free
    for uploads, /health and /model; at most `capacity` requests waiting or running."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._pending = 0
        self._lock = threading.Lock()  # a plain lock: test clients may run several event loops
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fcnseg-inference")

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, function: Callable[..., Result], *args: Any) -> Result:
        """`function(*args)` on the worker thread, or ApiError 503 when the queue is full."""
        with self._lock:
            if self._pending >= self.capacity:
                raise ApiError(
                    503,
                    f"the server is busy: {self._pending} requests are waiting or running, its "
                    f"limit (fcnseg serve --max-queue); try again in a moment.",
                    {"Retry-After": "1"},
                )
            self._pending += 1
        job: Future[Result] = self._executor.submit(function, *args)
        # Released when the job ends, not when its request does: a client that goes away does
        # not free a slot its job still holds, so the bound is real.
        job.add_done_callback(self._release)
        return await asyncio.wrap_future(job)

    def _release(self, _job: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
