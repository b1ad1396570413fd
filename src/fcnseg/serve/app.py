"""The HTTP API of `fcnseg serve` (FastAPI), and nothing else: no route reads a path on disk.

    GET  /          the page (page.html, shipped in the package): no external asset, works offline
    GET  /health    {"status": "ok", "queue": requests waiting or running, "max_queue": ...}
    GET  /model     name, task, classes, palette, input scale, backend, limits
    POST /predict   multipart field `image` -> the index mask as `fcnseg predict` writes it (PNG
                    of the image's own size); ?format=json -> the area of each class (and an
                    instance model's instances with boxes, scores and COCO RLE masks);
                    &include_mask=true adds the PNG in base64, which the page uses

Every error is JSON {"error": "one sentence"} with a 4xx or 5xx status (limits.py says which).
Inference runs on one worker thread (limits.WorkQueue), so the event loop goes on answering
while a request is predicted. FastAPI's own /docs, /redoc and /openapi.json are switched off:
they fetch their scripts from a CDN, and the API is this docstring.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from fcnseg.errors import FcnsegError
from fcnseg.serve.limits import ApiError, Limits, WorkQueue, read_header, read_upload
from fcnseg.serve.model import Prediction, ServedModel

# The page may use only itself: inline style and script, images from data: and blob: URLs.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)
NO_SNIFF = {"X-Content-Type-Options": "nosniff"}
ROUTES = "GET /, GET /health, GET /model and POST /predict"
log = logging.getLogger("fcnseg.serve")


def page_html() -> str:
    return (resources.files("fcnseg.serve") / "page.html").read_text(encoding="utf-8")


def create_app(model: ServedModel, limits: Limits | None = None) -> FastAPI:
    """The app serving `model` within `limits` (see the module docstring)."""
    limits = limits or Limits()
    queue = WorkQueue(limits.max_queue)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        queue.close()

    app = FastAPI(
        title="fcnseg", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.queue = queue  # for tests and /health
    app.add_exception_handler(ApiError, refused)
    app.add_exception_handler(HTTPException, not_here)
    add_routes(app, model, limits, queue)
    return app


async def refused(_request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse({"error": error.message}, error.status, {**error.headers, **NO_SNIFF})


async def not_here(request: Request, error: HTTPException) -> JSONResponse:
    """Starlette's own errors (no such route, wrong method) in the API's JSON form."""
    message = f"there is no {request.method} {request.url.path}; this server has {ROUTES}."
    text = message if error.status_code in (404, 405) else str(error.detail)
    return JSONResponse({"error": text}, error.status_code, NO_SNIFF)


def add_routes(app: FastAPI, model: ServedModel, limits: Limits, queue: WorkQueue) -> None:
    page = page_html()

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY, **NO_SNIFF})

    @app.get("/health")
    async def health() -> dict[str, object]:
        return {"status": "ok", "queue": queue.pending, "max_queue": limits.max_queue}

    @app.get("/model")
    async def describe() -> dict[str, object]:
        return {**model.describe(), "limits": limits.describe()}

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        output = request.query_params.get("format", "png")
        if output not in ("png", "json"):
            raise ApiError(400, f"format must be png (the mask) or json (areas), not '{output}'.")
        include_mask = request.query_params.get("include_mask", "false").lower() in ("1", "true")
        prediction = await predicted(request, model, limits, queue)
        if output == "json":
            return JSONResponse(model.reply(prediction, include_mask), headers=NO_SNIFF)
        headers = {"Content-Disposition": 'inline; filename="mask.png"', **NO_SNIFF}
        return Response(prediction.mask_png, media_type="image/png", headers=headers)


async def predicted(
    request: Request, model: ServedModel, limits: Limits, queue: WorkQueue
) -> Prediction:
    """The upload read and checked under `limits`, then predicted on the queue's worker."""
    upload = read_header(await read_upload(request, limits), limits)
    try:
        return await queue.run(model.predict, upload)
    except FcnsegError as error:  # the file is corrupt, or not what the model reads
        raise ApiError(400, str(error)) from None
    except ApiError:
        raise
    except Exception as error:  # a bug, not the sender's fault: say so, keep serving
        log.exception("inference failed on %s", upload.filename)
        raise ApiError(500, f"inference failed: {type(error).__name__}: {error}") from None
