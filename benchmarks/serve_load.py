"""Load test of `fcnseg serve`: REQUESTS predictions from CONCURRENCY clients at once, on loopback.

The server is started as a user starts it, `python -m fcnseg serve CHECKPOINT --port P` on a
free 127.0.0.1 port, in a child process; once /health answers, one request warms it up, then
CONCURRENCY client threads (the standard library's http.client, one keep-alive connection each)
share REQUESTS POST /predict of the same image. Every request is accounted for, so none can be
lost unseen: "ok" is a 200 answer holding a PNG mask of the image's own size; "refused" a 503
(the queue was full: raise --max-queue); "failed" anything else, a broken connection included.
Latency is per request, from sending the upload to the mask's last byte; images/s is ok answers
over the burst's wall time. The server is stopped with SIGTERM at the end, and killed if it does
not stop. Nothing is trained or downloaded: give a checkpoint (or an exported .onnx).

    .venv/bin/python benchmarks/serve_load.py runs/demo/best.pt
    .venv/bin/python benchmarks/serve_load.py runs/demo/best.pt --image photo.jpg \\
        --requests 200 --concurrency 8 --serve-args "--backend torch"

The image defaults to a generated shapes image of the demo's size (120 x 164).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fcnseg.data.synthetic import generate_sample

HOST = "127.0.0.1"  # loopback only: the test never leaves the machine


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status; 0: no answer (connection error)
    seconds: float
    ok: bool  # 200 and a PNG of the image's size


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(model: str, port: int, extra: list[str]) -> subprocess.Popen[str]:
    """`fcnseg serve` in a child process, returned once /health answers."""
    command = [sys.executable, "-m", "fcnseg", "serve", model, "--port", str(port), *extra]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"fcnseg serve exited ({server.returncode}):\n{server.stdout.read()}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("fcnseg serve did not answer /health within 120 s")


def stop_server(server: subprocess.Popen[str]) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


def multipart(image: bytes, name: str) -> tuple[bytes, str]:
    """The body and content type of an upload in the form field `image`."""
    boundary = f"fcnseg-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + image + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive connection per thread, opened again after a failure."""

    def __init__(self, port: int, body: bytes, content_type: str, size: tuple[int, int]) -> None:
        self.port, self.body, self.content_type, self.size = port, body, content_type, size
        self.local = threading.local()

    def send(self, _index: int) -> Answer:
        start = time.perf_counter()
        try:
            if getattr(self.local, "connection", None) is None:
                self.local.connection = http.client.HTTPConnection(HOST, self.port, timeout=300)
            connection = self.local.connection
            headers = {"Content-Type": self.content_type}
            connection.request("POST", "/predict", body=self.body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.local.connection = None
            return Answer(0, time.perf_counter() - start, False)
        seconds = time.perf_counter() - start
        return Answer(response.status, seconds, response.status == 200 and self.is_mask(data))

    def is_mask(self, data: bytes) -> bool:
        try:
            with Image.open(io.BytesIO(data)) as mask:
                return mask.format == "PNG" and mask.size == self.size
        except OSError:
            return False


def burst(client: Client, requests: int, concurrency: int) -> tuple[list[Answer], float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answers = list(pool.map(client.send, range(requests)))
    return answers, time.perf_counter() - start


def table(answers: list[Answer], wall: float, concurrency: int, facts: dict) -> str:
    ok = [answer for answer in answers if answer.ok]
    refused = sum(answer.status == 503 for answer in answers)
    failed = len(answers) - len(ok) - refused
    latencies = sorted(answer.seconds * 1000 for answer in ok) or [float("nan")]
    p99 = float(np.percentile(latencies, 99))
    rows = [
        "| requests | clients | ok | refused (503) | failed | p50 ms | p99 ms | max ms "
        "| images/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(answers)} | {concurrency} | {len(ok)} | {refused} | {failed} | "
        f"{statistics.median(latencies):.0f} | {p99:.0f} | {latencies[-1]:.0f} | "
        f"{len(ok) / wall:.1f} |",
    ]
    details = f"model {facts['name']} ({facts['task']}), backend: {facts['backend']}"
    return "\n".join([*rows, "", details])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a checkpoint (.pt) or an exported .onnx to serve")
    parser.add_argument("--image", type=Path, help="image to send (default: generated shapes)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve-args", default="", help='more flags, e.g. "--backend torch"')
    args = parser.parse_args()
    if args.image:
        data, name = args.image.read_bytes(), args.image.name
    else:
        buffer = io.BytesIO()
        Image.fromarray(generate_sample(0, 0, (120, 164))[0]).save(buffer, format="PNG")
        data, name = buffer.getvalue(), "shapes.png"
    with Image.open(io.BytesIO(data)) as image:
        size = image.size
    port = free_port()
    server = start_server(args.model, port, shlex.split(args.serve_args))
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        connection.request("GET", "/model")
        facts = json.loads(connection.getresponse().read())
        client = Client(port, *multipart(data, name), size)
        if not client.send(-1).ok:  # warm-up: first-call allocations are not the steady state
            raise SystemExit("the warm-up request failed; see the server's output")
        answers, wall = burst(client, args.requests, args.concurrency)
    finally:
        status = stop_server(server)
    print(f"{name}: {size[0]} x {size[1]} pixels, {len(data)} bytes; server exit status {status}")
    print(table(answers, wall, args.concurrency, facts))
    if any(not answer.ok for answer in answers):
        sys.exit(1)


if __name__ == "__main__":
    main()
