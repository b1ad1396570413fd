"""Fuzz the config loader and the checkpoint loader: every call ends in a result or an FcnsegError.

Seeds: the shipped recipes (YAML) and a small checkpoint written here. Mutations, seeded:

    config      bytes flipped, inserted, deleted; lines dropped, repeated, re-indented; a value
                swapped for another kind (a huge, negative or non-finite number, a string, a list,
                a mapping, null); an alias bomb or deep nesting spliced in
    checkpoint  bytes of the file flipped or cut (torch's zip container); or an entry of the
                loaded dict deleted or swapped for another kind, at the top or one level down,
                then saved again (a file fcnseg could have written, damaged)

Each call runs under a time limit (an alarm) and its extra memory is measured (peak RSS). An
outcome is "result", "FcnsegError", or a failure: any other exception, over the time limit, over
the memory limit. The test suite runs a fast seeded pass (tests/test_fuzz_loaders.py); the full
run prints a table:

    .venv/bin/python benchmarks/fuzz_loaders.py --calls 20000
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "src" / "fcnseg" / "configs").glob("*.yaml"))
ODD_VALUES: list[Any] = [
    -1, 0, 10**12, 1e308, float("nan"), float("inf"), "x", "", [], [1, "a"], {}, {"a": 1}, None,
    True, 2**63,
]  # fmt: skip


@dataclass
class Tally:
    """Outcomes of one target's calls, and the slowest and most memory-hungry."""

    outcomes: Counter = field(default_factory=Counter)
    slowest: float = 0.0
    most_memory_mb: float = 0.0
    failures: list[str] = field(default_factory=list)


# --- mutations ------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to eight flips, inserts, deletes or a cut."""
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not buffer:
            break
        position = rng.randrange(len(buffer))
        action = rng.choice(("flip", "insert", "delete", "cut"))
        if action == "flip":
            buffer[position] ^= 1 << rng.randrange(8)
        elif action == "insert":
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif action == "delete":
            del buffer[position : position + rng.randint(1, 8)]
        else:
            del buffer[position:]
    return bytes(buffer)


def mutate_yaml(text: str, rng: random.Random) -> str:
    """A structural or value mutation of a YAML text (or, one time in four, of its bytes)."""
    lines = text.splitlines()
    action = rng.choice(("bytes", "drop", "repeat", "indent", "value", "value", "bomb", "deep"))
    index = rng.randrange(len(lines)) if lines else 0
    if action == "bytes":
        return mutate_bytes(text.encode(), rng).decode("utf-8", errors="replace")
    if action == "drop" and lines:
        del lines[index]
    elif action == "repeat" and lines:
        lines.insert(index, lines[index])
    elif action == "indent" and lines:
        lines[index] = " " * rng.choice((1, 2, 3, 8)) + lines[index]
    elif action == "value" and lines and ":" in lines[index]:
        key = lines[index].split(":", 1)[0]
        lines[index] = f"{key}: {rng.choice(ODD_VALUES)!r}".replace("'", "")
    elif action == "bomb":
        lines.append('z: &z0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]')
        lines += [f"z{i}: &z{i} [{', '.join([f'*z{i - 1}'] * 10)}]" for i in range(1, 9)]
    elif action == "deep":
        lines.append("deep: " + "[" * rng.choice((70, 500, 5000)) + "]" * 70)
    return "\n".join(lines) + "\n"


def mutate_entries(state: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Delete an entry of the checkpoint, or give it (or one of its own entries) an odd value."""
    key = rng.choice(sorted(state))
    target, name = state, key
    if isinstance(state[key], dict) and state[key] and rng.random() < 0.5:
        target, name = state[key], rng.choice(sorted(state[key], key=str))
    if rng.random() < 0.3:
        del target[name]
    else:
        target[name] = rng.choice([*ODD_VALUES, torch.zeros(2, 3), torch.zeros(0)])
    return state


# --- one call under limits --------------------------------------------------------------------


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def classify(call: Callable[[], Any], seconds: float) -> tuple[str, float, str]:
    """(outcome, seconds taken, detail) of one call."""
    from fcnseg.errors import FcnsegError

    start = time.perf_counter()
    try:
        with time_limit(seconds):
            call()
        outcome, detail = "result", ""
    except FcnsegError:
        outcome, detail = "FcnsegError", ""
    except TimeoutError:
        outcome, detail = "over time", ""
    except Exception as error:  # the failures this harness exists to find
        outcome, detail = "other exception", f"{type(error).__name__}: {error}"[:200]
    return outcome, time.perf_counter() - start, detail


# --- targets ------------------------------------------------------------------------------------


def config_cases(folder: Path, count: int, seed: int) -> Iterator[tuple[str, Callable[[], Any]]]:
    from fcnseg.config import load_config

    rng = random.Random(seed)
    seeds = [path.read_text() for path in RECIPES]
    for index in range(count):
        path = folder / f"config-{index % 4}.yaml"
        path.write_text(mutate_yaml(rng.choice(seeds), rng), errors="replace")
        yield "config", lambda path=path: load_config(path)


def checkpoint_cases(
    folder: Path, count: int, seed: int
) -> Iterator[tuple[str, Callable[[], Any]]]:
    import fcnseg

    sys.path.insert(0, str(ROOT))
    from tests.tiny_runs import write_checkpoint

    good = write_checkpoint(folder / "good.pt")
    original = good.read_bytes()
    rng = random.Random(seed)
    for index in range(count):
        path = folder / f"checkpoint-{index % 4}.pt"
        if rng.random() < 0.5:
            path.write_bytes(mutate_bytes(original, rng))
            kind = "checkpoint bytes"
        else:
            state = torch.load(good, weights_only=True)
            torch.save(mutate_entries(state, rng), path)
            kind = "checkpoint entries"
        yield kind, lambda path=path: fcnseg.load(path, "cpu")


def run(calls: int, seed: int, seconds: float, memory_mb: float) -> dict[str, Tally]:
    """Half the calls to each loader; the tallies by target."""
    tallies: dict[str, Tally] = {}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        # Lazily: each case writes its file just before its call (the files are reused).
        cases = itertools.chain(
            config_cases(folder, calls // 2, seed),
            checkpoint_cases(folder, calls - calls // 2, seed),
        )
        for kind, call in cases:
            before = peak_rss_mb()
            outcome, taken, detail = classify(call, seconds)
            grown = peak_rss_mb() - before  # the peak only rises: growth is this call's
            tally = tallies.setdefault(kind, Tally())
            if grown > memory_mb:
                outcome = "over memory"
            tally.outcomes[outcome] += 1
            tally.slowest = max(tally.slowest, taken)
            tally.most_memory_mb = max(tally.most_memory_mb, grown)
            if outcome not in ("result", "FcnsegError"):
                tally.failures.append(f"{kind}: {outcome} {detail}")
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    lines = [
        "| target | calls | result | FcnsegError | other exception | over 2 s | over 1 GB "
        "| slowest s | most extra MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, tally in tallies.items():
        counts = tally.outcomes
        lines.append(
            f"| {kind} | {sum(counts.values())} | {counts['result']} | {counts['FcnsegError']} "
            f"| {counts['other exception']} | {counts['over time']} | {counts['over memory']} "
            f"| {tally.slowest:.2f} | {tally.most_memory_mb:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=2.0, help="time limit per call")
    parser.add_argument("--memory-mb", type=float, default=1024, help="extra memory per call")
    args = parser.parse_args()
    start = time.perf_counter()
    tallies = run(args.calls, args.seed, args.seconds, args.memory_mb)
    print(table(tallies))
    failures = [failure for tally in tallies.values() for failure in tally.failures]
    print(f"\n{args.calls} calls in {time.perf_counter() - start:.0f} s; {len(failures)} failures")
    for failure in failures[:20]:
        print(f"  {failure}")


if __name__ == "__main__":
    main()
