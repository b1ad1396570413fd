"""`fcnseg predict`: masks (an instance model's also JSON) and overlays of images, in one process
or shared out among the processes of `torchrun`.

    predict(checkpoint, inputs, out, ...)   the command, for both tasks
    use_crf(predictor, crf)                 --crf and --crf-set into the Predictor's options

Under `torchrun --nnodes=N --nproc_per_node=M -m fcnseg predict CHECKPOINT FOLDER --out DIR`
every rank lists the same inputs, sorted, and takes its share: of the W ranks, rank r predicts
the files r, r + W, r + 2W, ... of those still to do, and writes their outputs itself. Each
file is predicted once, by one rank; each output is renamed into place whole
(fcnseg.storage.atomic), so a rank that dies leaves the other ranks' files, and its own finished
ones, whole. Rank 0 alone makes, marks and locks the output folder while the others wait at a
barrier; all ranks list the files still to do before any of them writes, so all see the same.

`--skip-existing` keeps every input whose outputs are all complete (inference/files.py,
`unfinished`) and predicts the rest: the rerun after a rank died, or after Ctrl-C. It deletes
nothing, so it adds to a folder an earlier predict made without --overwrite (and refuses
--overwrite, which would delete what it is meant to keep).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from fcnseg.commands import instances as instance_commands
from fcnseg.commands.runs import main_rank_only
from fcnseg.errors import FcnsegError
from fcnseg.inference import InferenceOptions, InstancePredictor, Predictor, load
from fcnseg.inference.backends import select_backend
from fcnseg.inference.files import (
    input_images,
    mask_outputs,
    output_names,
    predict_file,
    predict_files,
    unfinished,
)
from fcnseg.inference.instance_files import instance_outputs, predict_instance_file
from fcnseg.inference.loading import resolve_device
from fcnseg.inference.options import crf_parameters
from fcnseg.storage.folders import MARKER, check_location, run_folder
from fcnseg.storage.locks import RunLock
from fcnseg.training import distributed


def predict(
    checkpoint_path: str,
    inputs: str,
    out: str,
    overwrite: bool,
    backend: str = "auto",
    onnx_path: str | None = None,
    options: InferenceOptions | None = None,
    show_progress: bool = True,
    crf: list[str] | None = None,
    skip_existing: bool = False,
) -> list[str]:
    """Write <name>.png (palette index mask) and <name>_overlay.png for each input image (an
    instance model: ID map, JSON and overlay, inference/instance_files.py), through the fastest
    backend at hand (fcnseg.inference.backends) and the Predictor's `options` (tiles, TTA),
    into a new folder (or with `overwrite` an fcnseg one; with `skip_existing` also into an
    fcnseg one as it is). Under torchrun, this rank's share (module docstring).

    Returns the failures of every rank ("file: reason"); unreadable images are skipped, not
    fatal. `crf`: None, or the --crf-set overrides of a dense CRF (use_crf).
    """
    if skip_existing and overwrite:
        raise FcnsegError(
            "--skip-existing keeps the outputs already written and --overwrite deletes them; "
            "give one of them."
        )
    device = distributed.local_device(resolve_device("auto"))  # under torchrun: its own GPU
    predictor = load(checkpoint_path, device=str(device), options=options)
    use_crf(predictor, crf)
    images, names = _inputs(inputs, out)
    out_dir = Path(out)
    reads = [checkpoint_path, inputs, *([onnx_path] if onnx_path else [])]
    write, outputs = _writer(predictor, checkpoint_path, backend, onnx_path, show_progress)
    folder = _continued_folder if skip_existing else _new_folder
    with main_rank_only(lambda: folder(out_dir, overwrite, reads), out_dir):
        distributed.barrier()  # the folder is made (or emptied) before any rank looks into it
        todo = unfinished(images, names, out_dir, outputs) if skip_existing else images
        distributed.barrier()  # every rank has its list before any rank writes
        if show_progress and distributed.is_main() and len(todo) < len(images):
            done = len(images) - len(todo)
            rest = f"predicting the other {len(todo)}" if todo else "nothing left to predict"
            print(f"{done} of {len(images)} images have their outputs already; {rest}")
        share = todo[distributed.rank() :: distributed.world_size()]
        progress = show_progress and distributed.is_main()
        failures = predict_files(predictor, share, out_dir, progress, names, write)
        return _from_every_rank(failures)  # also: rank 0 keeps the lock until every rank is done


def _inputs(inputs: str, out: str) -> tuple[list[Path], dict[Path, str]]:
    """The input images, sorted, and their output names: over every input, so that each rank
    names its share as one process would."""
    images = input_images(Path(inputs))
    names = output_names(images)  # unique, or a clear refusal before any work
    resolved = Path(out).resolve()
    if any(resolved == image.parent or resolved in image.parents for image in images):
        raise FcnsegError(
            f"--out {out} holds the input images; writing there could overwrite them. "
            "Choose a separate output folder."
        )
    return images, names


def _writer(
    predictor: Predictor | InstancePredictor,
    checkpoint_path: str,
    backend: str,
    onnx_path: str | None,
    show_progress: bool,
) -> tuple[Callable[..., None], Callable[[str], list[str]]]:
    """Put the network of --backend / --onnx into the predictor; return what writes one image's
    files and what names them (the outputs --skip-existing looks for)."""
    if isinstance(predictor, InstancePredictor):  # ID maps, JSON and overlays
        description = instance_commands.use_export_if_asked(
            predictor, checkpoint_path, backend, onnx_path
        )
        write, outputs = predict_instance_file, instance_outputs
    else:
        predictor.model, description = select_backend(
            predictor.model, checkpoint_path, backend, onnx_path, predictor.device
        )
        write, outputs = predict_file, mask_outputs
    if show_progress and distributed.is_main():
        print(f"backend: {description}")
    return write, outputs


def use_crf(predictor: Predictor | InstancePredictor, crf: list[str] | None) -> None:
    """`--crf [--crf-set key=value ...]`: the dense CRF of the checkpoint config's inference.crf
    (the defaults when it has none), with the overrides, goes into the Predictor's options.
    `crf` None: no CRF."""
    if crf is None:
        return
    if isinstance(predictor, InstancePredictor):
        raise FcnsegError(
            "--crf refines the class scores of a semantic model, but this checkpoint holds an "
            "instance model; leave out --crf and --crf-set."
        )
    saved = (predictor.checkpoint.get("config") or {}).get("inference") or {}
    predictor.options = replace(predictor.options, crf=crf_parameters(saved.get("crf"), crf))


@contextmanager
def _new_folder(path: Path, overwrite: bool, reads: list[str]) -> Iterator[Path]:
    with run_folder(path, overwrite, reads, "predict"):
        yield path


@contextmanager
def _continued_folder(path: Path, overwrite: bool, reads: list[str]) -> Iterator[Path]:
    """--skip-existing: a new or empty folder is made as run_folder makes it; a folder fcnseg
    made is locked and written into as it is, nothing in it deleted; any other is refused."""
    check_location(path)
    if not path.is_dir() or not any(path.iterdir()):
        with run_folder(path, overwrite, reads, "predict"):
            yield path
        return
    if not (path / MARKER).is_file():
        raise FcnsegError(
            f"{path} exists and is not an fcnseg output folder (no {MARKER} file); "
            "--skip-existing adds only to a folder fcnseg predict made. Choose another --out "
            "folder."
        )
    with RunLock(path, "predict --skip-existing"):
        yield path


def _from_every_rank(failures: list[str]) -> list[str]:
    """The failures of every rank, in rank order, on every rank (one process: its own).

    The texts travel as bytes in an integer tensor added up over the ranks, each rank filling
    its own row: a CPU tensor, so it goes over gloo even beside NCCL (training/distributed.py).
    """
    ranks = distributed.world_size()
    if ranks == 1:
        return failures
    text = "\0".join(failures).encode()  # NUL: in no message
    lengths = torch.zeros(ranks, dtype=torch.int64)
    lengths[distributed.rank()] = len(text)
    distributed.sum_across_ranks(lengths)
    table = torch.zeros(ranks, max(int(lengths.max()), 1), dtype=torch.int32)  # (W, bytes)
    table[distributed.rank(), : len(text)] = torch.tensor(list(text), dtype=torch.int32)
    distributed.sum_across_ranks(table)
    rows = [bytes(table[rank, : int(lengths[rank])].tolist()).decode() for rank in range(ranks)]
    return [failure for row in rows if row for failure in row.split("\0")]
