"""`fcnseg serve CHECKPOINT_OR_ONNX`: the model behind an HTTP API and a page (fcnseg.serve).

The model is loaded as `fcnseg predict` loads it (fcnseg.load, the same inference options and
CRF, the same backend choice), so a served mask equals predict's. The server listens on
127.0.0.1 unless --host says otherwise: the API has no authentication, so another address is
printed with a warning. The socket is bound here, before uvicorn starts, so a port in use is
one clear sentence rather than a log line.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket

from fcnseg.commands.prediction import use_crf
from fcnseg.errors import FcnsegError
from fcnseg.inference import InferenceOptions, load
from fcnseg.serve.limits import Limits

REQUIRED = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def check_installed() -> None:
    """Refuse, naming the extra, when the serve extra's packages are missing."""
    missing = [
        name for module, name in REQUIRED.items() if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise FcnsegError(
            f"fcnseg serve needs {', '.join(missing)}, not installed here; install fcnseg's "
            "serve extra: pip install 'fcnseg[serve]'."
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on (host, port), or a clear error when that cannot be."""
    if not 0 <= port <= 65535:
        raise FcnsegError(f"--port must be 0..65535, got {port}; 8000 is the default.")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as error:
        raise FcnsegError(
            f"cannot listen on {host} port {port} ({error.strerror or error}); the port may be "
            "in use: choose another with --port, or a local address with --host."
        ) from None
    return listener


def serve(
    model_path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    backend: str = "auto",
    onnx_path: str | None = None,
    options: InferenceOptions | None = None,
    crf: list[str] | None = None,
) -> None:
    """Serve `model_path` (a checkpoint or an exported .onnx) until Ctrl-C or SIGTERM."""
    check_installed()
    import uvicorn

    from fcnseg.serve.app import create_app
    from fcnseg.serve.model import served_model

    limits = limits or Limits()
    predictor = load(model_path, options=options)
    use_crf(predictor, crf)
    model = served_model(predictor, model_path, backend, onnx_path)
    listener = bound_socket(host, port)
    address = f"[{host}]" if ":" in host else host
    print(f"serving {model.name} ({model.task}; backend: {model.backend})")
    print(f"page and API: http://{address}:{listener.getsockname()[1]}/  (Ctrl-C stops it)")
    if not is_loopback(host):
        print(f"warning: --host {host} lets other machines use this API; it has no password.")
    config = uvicorn.Config(
        create_app(model, limits),
        log_level="warning",
        access_log=False,
        limit_concurrency=max(64, 4 * limits.max_queue),  # connections beyond: a plain 503
        timeout_keep_alive=5,
    )
    uvicorn.Server(config).run(sockets=[listener])
