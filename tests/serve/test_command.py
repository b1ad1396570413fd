"""`fcnseg serve` as a user runs it: a process on loopback that answers and stops on SIGTERM
like every fcnseg command; and its refusals (a port in use, the extra missing)."""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fcnseg.cli import build_parser
from fcnseg.commands import serve as serve_command
from fcnseg.errors import FcnsegError

REASON = "fcnseg serve needs its extra: pip install -e '.[serve]'"


def test_the_defaults_listen_on_loopback_port_8000():
    args = build_parser().parse_args(["serve", "best.pt"])
    assert (args.host, args.port, args.max_queue, args.backend) == ("127.0.0.1", 8000, 16, "auto")
    assert args.max_upload_mb == 32 and args.max_pixels == 50_000_000


def test_loopback_addresses_are_told_apart():
    assert all(map(serve_command.is_loopback, ("127.0.0.1", "::1", "localhost", "127.0.0.2")))
    assert not any(map(serve_command.is_loopback, ("0.0.0.0", "192.168.1.5", "example.org")))


def test_a_port_in_use_is_one_clear_sentence():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(FcnsegError, match=f"cannot listen on 127.0.0.1 port {port}.*--port"):
            serve_command.bound_socket("127.0.0.1", port)
    with pytest.raises(FcnsegError, match=r"--port must be 0\.\.65535"):
        serve_command.bound_socket("127.0.0.1", 70000)


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name)
    )
    with pytest.raises(FcnsegError, match=r"needs .*uvicorn.*pip install 'fcnseg\[serve\]'"):
        serve_command.check_installed()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_the_command_serves_until_sigterm(checkpoint: Path):
    for module in ("fastapi", "uvicorn", "python_multipart"):
        pytest.importorskip(module, reason=REASON)
    with socket.socket() as probe:  # a free port, given back for the server to take
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "fcnseg", "serve", str(checkpoint), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 60, None
        while health is None and time.monotonic() < deadline and process.poll() is None:
            try:
                health = get_json(f"http://127.0.0.1:{port}/health")
            except OSError:
                time.sleep(0.2)
        assert health == {"status": "ok", "queue": 0, "max_queue": 16}, process.poll()
        assert get_json(f"http://127.0.0.1:{port}/model")["classes"] == [
            "ground",
            "circle",
            "square",
        ]
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert f"http://127.0.0.1:{port}/" in stdout and "warning" not in stdout
    assert stderr.strip().endswith("terminated")
