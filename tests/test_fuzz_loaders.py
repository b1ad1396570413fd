"""A fast seeded pass of benchmarks/fuzz_loaders.py: mutated configs and checkpoints through
load_config and fcnseg.load, each call ending in a result or an FcnsegError, within 2 s and
1 GB (the full run, 20,000 calls, is the benchmark; docs/reliability.md has its table)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_loaders.py"


def load_harness():
    spec = importlib.util.spec_from_file_location("fuzz_loaders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [11, 12])
def test_mutated_configs_and_checkpoints_end_in_a_result_or_a_clear_error(seed):
    harness = load_harness()
    tallies = harness.run(calls=300, seed=seed, seconds=2.0, memory_mb=1024)
    failures = [failure for tally in tallies.values() for failure in tally.failures]
    assert failures == []
    outcomes = {kind: tally.outcomes for kind, tally in tallies.items()}
    # The harness must reach both ends: files that load and files that are refused.
    assert all(counts["result"] > 0 and counts["FcnsegError"] > 0 for counts in outcomes.values())


def test_the_harness_catches_what_it_is_for():
    harness = load_harness()

    def crash():
        raise IndexError("pop from empty list")

    def hang():
        while True:
            pass

    assert harness.classify(crash, 1.0)[0] == "other exception"
    assert harness.classify(hang, 0.2)[0] == "over time"
