"""A fast seeded pass of benchmarks/fuzz_readers.py: about 500 mutated PNG, JPEG, TIFF, BMP,
WebP and palette files through every image and mask reader and through the label doctor
(`fcnseg inspect`), each call ending in a result or an FcnsegError within 2 s and 1 GB of extra
memory. The full run (20,000 calls) is the benchmark; docs/reliability.md has its table.

The pass runs in a child process: the harness limits its own address space there, so that an
allocation past the memory limit fails instead of being made, whatever else pytest holds."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_readers.py"
READERS = ["image", "mask index", "mask binary", "mask palette", "mask rgb", "instance map"]
READERS += ["band reader"]
DOCTOR = ["inspect as image", "inspect as mask"]
CALLS = 4500  # about 500 mutated files: each goes to all 9 readers (a JPEG to 8: no ID map)


def load_harness():
    spec = importlib.util.spec_from_file_location("fuzz_readers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The counts by reader and the failures of one seeded pass (seed 15, the issue's number)."""
    out = tmp_path_factory.mktemp("fuzz") / "fuzz.json"
    command = [sys.executable, str(SCRIPT), "--calls", str(CALLS), "--seed", "15"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, env=environment, timeout=600
    )
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(out.read_text())


def failures_of(fuzzed: dict[str, Any], readers: list[str]) -> list[str]:
    """The failures of these readers; each line reads "case N READER / mutation: outcome"."""
    return [line for line in fuzzed["failures"] if line.split(" / ")[0].split(" ", 2)[2] in readers]


def test_every_reader_ends_in_a_result_or_a_clear_error(fuzzed: dict[str, Any]):
    assert failures_of(fuzzed, READERS) == []
    counts = fuzzed["by_reader"]
    # The pass must reach both ends: files that read and files that are refused.
    for reader in READERS:
        assert counts[reader].get("result", 0) > 0 and counts[reader]["FcnsegError"] > 0, reader


def test_the_label_doctor_survives_every_mutated_file(fuzzed: dict[str, Any]):
    assert failures_of(fuzzed, DOCTOR) == []
    counts = fuzzed["by_reader"]
    assert counts["inspect as image"]["result"] > 0  # a bad image is a finding, not an error
    assert counts["inspect as mask"]["FcnsegError"] > 0  # the masks' encoding is unreadable
    assert sum(sum(reader.values()) for reader in counts.values()) == CALLS


def test_the_harness_catches_what_it_is_for():
    harness = load_harness()

    def crash() -> None:
        raise IndexError("index 9 is out of bounds")

    def hang_past_an_oserror_handler() -> None:  # TimeoutError is an OSError
        while True:
            with contextlib.suppress(OSError):
                sum(range(1000))

    def exhaust() -> None:
        raise MemoryError

    outcome, _, detail = harness.classify(crash, 1.0)
    assert outcome == "other exception" and "test_fuzz_readers.py" in detail
    assert harness.classify(hang_past_an_oserror_handler, 0.2)[0] == "over time"
    assert harness.classify(exhaust, 1.0)[0] == "over memory"
    with harness.address_space_limit(64):
        assert harness.classify(lambda: bytearray(2**30), 1.0)[0] == "over memory"
