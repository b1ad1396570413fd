"""Fuzz fcnseg's image and mask readers: any bytes end in a result or an FcnsegError, quickly.

Seeds are small valid files written here (PNG RGB, palette, 16-bit grey, 1-bit and 16-bit
colour; JPEG; TIFF striped, tiled and deflated; a palette BMP; a lossless WebP), all 48 x 40
pictures of the same four-class label field. Each case mutates one seed, seeded and reproducible
(fuzz_mutations.py): bytes flipped, inserted, deleted or cut; header fields (sizes, depths,
colour types, TIFF tags, JPEG, BMP and WebP sizes) set to odd or huge values; PNG chunks
duplicated, dropped or their zlib stream damaged, with the CRCs fixed so that the damage
reaches the decoder.
Every reader then gets the file:

    image                read_image (fcnseg.data.images)
    mask index/binary/   a LabelReader of that encoding (fcnseg.data.masks), 4 classes; rgb
    palette/rgb          through a table of the seeds' four colours
    instance map         read_id_map (fcnseg.data.instances.maps)
    band reader          BandSource (fcnseg.inference.streaming), every band of 16 rows
    inspect as image     the label doctor on a folder holding the file as its one image (or
    inspect as mask      mask), and its report, as `fcnseg inspect` prints it

Each call runs under a time limit (an interval timer) and a memory limit: its growth of the peak
resident memory, and, for the whole run, an address-space limit (RLIMIT_AS) of the memory at the
start plus the same amount, so that an allocation beyond it fails (MemoryError) rather than
being made. Outcomes: "result", "FcnsegError", or a failure: any other exception, over time, over
memory. The test suite runs a fast seeded pass (tests/data/test_fuzz_readers.py); the full run:

    .venv/bin/python benchmarks/fuzz_readers.py --calls 20000 [--seed N] [--keep-failures DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # fuzz_mutations.py beside this file

from fuzz_mutations import COLOURS, SEEDS, mutate, place, prepare_inspect_folders, write_seeds

ENCODINGS = ("index", "binary", "palette", "rgb")  # the mask readers, one per encoding


class CallTimeout(BaseException):
    """The time limit; a BaseException so that no reader's `except OSError` (TimeoutError is
    one) or `except Exception` can take it for a decoding error."""


@dataclass
class Tally:
    """Outcomes of one group of calls, and the slowest and most memory-hungry of them."""

    outcomes: Counter = field(default_factory=Counter)
    slowest: float = 0.0
    most_memory_mb: float = 0.0

    def add(self, outcome: str, seconds: float, memory_mb: float) -> None:
        self.outcomes[outcome] += 1
        self.slowest = max(self.slowest, seconds)
        self.most_memory_mb = max(self.most_memory_mb, memory_mb)


# --- one call under limits --------------------------------------------------------------------


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise CallTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def classify(call: Callable[[], object], seconds: float) -> tuple[str, float, str]:
    """(outcome, seconds taken, detail) of one call; a call past the limit is "over time" even
    when it ends (C code cannot be interrupted, only measured)."""
    from fcnseg.errors import FcnsegError

    start = time.perf_counter()
    try:
        with time_limit(seconds):
            call()
        outcome, detail = "result", ""
    except FcnsegError as error:
        outcome, detail = "FcnsegError", str(error)
    except CallTimeout:
        outcome, detail = "over time", ""
    except MemoryError as error:
        outcome, detail = "over memory", f"MemoryError (raised through {last_fcnseg_line(error)})"
    except Exception as error:  # the failures this harness exists to find
        outcome, detail = "other exception", f"{type(error).__name__}: {error}"[:300]
        detail += f" (raised through {last_fcnseg_line(error)})"
    taken = time.perf_counter() - start
    if taken > seconds and outcome != "over memory":
        outcome = "over time"
    return outcome, taken, detail


def last_fcnseg_line(error: BaseException) -> str:
    """Where the exception last passed through fcnseg's code: the line to fix, or to guard."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = [frame for frame in frames if "/fcnseg/" in frame.filename.replace("\\", "/")]
    frame = (inside or frames or [None])[-1]
    if frame is None:
        return "?"
    return f"{frame.filename.split('/src/')[-1]}:{frame.lineno}"


@contextmanager
def address_space_limit(extra_mb: float) -> Iterator[None]:
    """Allocations beyond the process's current address space plus `extra_mb` fail."""
    size_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmSize:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (int((size_kb * 1024) + extra_mb * 2**20), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- the readers --------------------------------------------------------------------------------


def mask_reader(encoding: str) -> Callable[[Path], object]:
    from fcnseg.data.masks.classes import ClassEntry, ClassTable
    from fcnseg.data.masks.encodings import detect_codec, read_stored_mask
    from fcnseg.data.masks.labels import LabelReader, MaskFormat, build_label_map

    entries = [ClassEntry(value, f"c{value}", colour) for value, colour in enumerate(COLOURS)]
    table = ClassTable(tuple(entries), "the seeds' colours") if encoding == "rgb" else None

    def read(path: Path) -> object:
        codec = detect_codec(encoding, [read_stored_mask(path)], table, 4, [255])
        mask_format = MaskFormat(codec, table, [], "")
        return LabelReader(mask_format, build_label_map(mask_format, 4, 255), None).read(path)

    return read


def read_bands(path: Path) -> None:
    from fcnseg.config import DataConfig
    from fcnseg.inference.streaming import BandSource

    source = BandSource(path, DataConfig(image_mode="RGB"))
    for top in range(0, source.height, 16):
        source.rows(top, top + 16)


def inspect_folder(root: Path) -> str:
    """The label doctor and its report on `root`, as `fcnseg inspect ROOT` computes them."""
    from fcnseg.config import DataConfig
    from fcnseg.data.doctor.inspect import inspect_data
    from fcnseg.data.doctor.report import format_report, inspection_dict, training_scan
    from fcnseg.losses import median_frequency_weights

    data = DataConfig(kind="folder", root=str(root))
    inspection = inspect_data(data, infer_classes=True)
    scan = training_scan(inspection, "train")
    weights = median_frequency_weights(scan.class_pixels, scan.presence_pixels)
    json.dumps(inspection_dict(inspection, "train", weights))
    return format_report(inspection, "train", weights, None)


def readers() -> dict[str, Callable[[Path], object]]:
    from fcnseg.data.images import read_image
    from fcnseg.data.instances.maps import read_id_map

    return {
        "image": read_image,
        **{f"mask {encoding}": mask_reader(encoding) for encoding in ENCODINGS},
        "instance map": read_id_map,
        "band reader": read_bands,
        "inspect as image": inspect_folder,
        "inspect as mask": inspect_folder,
    }


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Fuzzer:
    """The readers, the files they read, the limits and the tallies of one run."""

    folder: Path
    seconds: float
    memory_mb: float
    keep: Path | None = None
    by_reader: dict[str, Tally] = field(default_factory=dict)
    by_format: dict[str, Tally] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.seeds = write_seeds(self.folder / "seeds")
        prepare_inspect_folders(self.folder, self.seeds)
        self.readers = readers()

    def case(self, seed: int, index: int, budget: int) -> int:
        """Mutate the case's seed file and give it to each reader (at most `budget` of them);
        returns the number of calls made."""
        rng = random.Random(seed * 1_000_003 + index)  # each case reproducible on its own
        name = SEEDS[index % len(SEEDS)]
        suffix, original = self.seeds[name]
        data, how = mutate(name, original, rng)
        made = 0
        for target, reader in self.readers.items():
            if made == budget or (target == "instance map" and suffix == ".jpg"):
                continue  # a JPEG instance map is refused by its name, before it is read
            path = place(self.folder, target, data, suffix)
            before = peak_rss_mb()
            outcome, taken, detail = classify(partial(reader, path), self.seconds)
            grown = peak_rss_mb() - before  # the peak only rises: growth is this call's
            outcome = "over memory" if grown > self.memory_mb else outcome
            self.by_reader.setdefault(target, Tally()).add(outcome, taken, grown)
            self.by_format.setdefault(name, Tally()).add(outcome, taken, grown)
            made += 1
            if outcome not in ("result", "FcnsegError"):
                self.failures.append(f"case {index} {target} / {how}: {outcome} {detail}")
                if self.keep is not None:
                    self.keep.mkdir(parents=True, exist_ok=True)
                    (self.keep / f"case{index}-{name}{suffix}").write_bytes(data)
        return made


def run(
    calls: int, seed: int, seconds: float = 2.0, memory_mb: float = 1024.0, keep: Path | None = None
) -> Fuzzer:
    """Mutated files through every reader until `calls` calls; the fuzzer holds the tallies by
    reader and by seed format, and the failures (case, reader, mutation, what happened)."""
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # its warnings would flood the table
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as directory:
        fuzzer = Fuzzer(Path(directory), seconds, memory_mb, keep)
        made, index = 0, 0
        with address_space_limit(memory_mb):
            while made < calls:
                made += fuzzer.case(seed, index, calls - made)
                index += 1
    return fuzzer


def table(tallies: dict[str, Tally], first: str, seconds: float, memory_mb: float) -> str:
    """A markdown table of the tallies with a total row."""
    limits = f"over {seconds:g} s | over {memory_mb / 1024:g} GB"
    lines = [
        f"| {first} | calls | result | FcnsegError | failures | {limits} | slowest s "
        "| most extra MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = Tally()
    for name, tally in [*tallies.items(), ("**total**", total)]:
        counts = tally.outcomes
        lines.append(
            f"| {name} | {sum(counts.values())} | {counts['result']} | {counts['FcnsegError']} "
            f"| {counts['other exception']} | {counts['over time']} | {counts['over memory']} "
            f"| {tally.slowest:.3f} | {tally.most_memory_mb:.0f} |"
        )
        if tally is not total:
            total.outcomes.update(counts)
            total.slowest = max(total.slowest, tally.slowest)
            total.most_memory_mb = max(total.most_memory_mb, tally.most_memory_mb)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=2.0, help="time limit per call")
    parser.add_argument("--memory-mb", type=float, default=1024, help="extra memory per call")
    parser.add_argument("--keep-failures", type=Path, help="folder for the failing files")
    parser.add_argument("--json", type=Path, help="also write the counts and failures here")
    args = parser.parse_args()
    start = time.perf_counter()
    fuzzer = run(args.calls, args.seed, args.seconds, args.memory_mb, args.keep_failures)
    elapsed = time.perf_counter() - start
    failures = fuzzer.failures
    print(table(fuzzer.by_reader, "reader", args.seconds, args.memory_mb))
    print()
    print(table(fuzzer.by_format, "seed file", args.seconds, args.memory_mb))
    print(f"\n{args.calls} calls, seed {args.seed}, in {elapsed:.0f} s; {len(failures)} failures")
    for failure in failures[:30]:
        print(f"  {failure}")
    if args.json:
        counts = {name: dict(tally.outcomes) for name, tally in fuzzer.by_reader.items()}
        args.json.write_text(json.dumps({"by_reader": counts, "failures": failures}))


if __name__ == "__main__":
    main()
