"""Which config a training run uses and which folder it writes: `fcnseg train` and `demo`.

    started_run(config, ...)   the config (a YAML file or a packaged recipe, plus --set), and
                               a new run folder (fcnseg.storage.folders) with config.yaml in it
    resumed_run(run, ...)      the config saved in the run's last.pt, plus --set, in the
                               run's own folder (given as the folder or its last.pt), which
                               must be one fcnseg made
    check_task(config)         the model solves config.task (refused before the folder is made)
    status(text)               a line on the terminal while a step without a count runs
    score_line(run_dir)        the headline scores of a finished run or evaluation

Both hold the folder's lock (fcnseg.storage.locks) until the block ends. Under torchrun rank 0 alone
makes, locks and writes the folder, while the other ranks wait for it at a barrier. A run that
fails before its first checkpoint takes away the folder it made (see started_run), so that the
corrected command needs no --overwrite.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from fcnseg.checkpoint import load_checkpoint
from fcnseg.config import Config, build_config, load_config, save_config
from fcnseg.errors import FcnsegError
from fcnseg.models import list_models, task_of
from fcnseg.registry import suggest
from fcnseg.storage.folders import MARKER, resumed_folder, run_dir_for, run_folder
from fcnseg.storage.locks import LOCK
from fcnseg.training import distributed

# What a run folder holds before the first checkpoint: all of it this run's own writing.
WRITTEN_BEFORE_CHECKPOINT = frozenset({MARKER, LOCK, "config.yaml", "tensorboard", "mlruns"})
REPORT_STATUS = "writing the report: pictures, report.md, report.html"


def recipe_names() -> list[str]:
    folder = resources.files("fcnseg") / "configs"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def resolve_config(name_or_path: str) -> Path:
    """A YAML path as given, or the name of a recipe shipped with fcnseg (e.g. 'demo')."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if name_or_path in recipe_names():
        return Path(str(resources.files("fcnseg") / "configs" / f"{name_or_path}.yaml"))
    raise FcnsegError(
        f"config {name_or_path} is neither a file nor a packaged recipe."
        f"{suggest(name_or_path, recipe_names())} Recipes: {', '.join(recipe_names())}."
    )


@contextmanager
def started_run(
    config_path: str | None,
    overrides: list[str],
    out: str | None,
    overwrite: bool,
    reads_data: bool = True,
) -> Iterator[tuple[Config, Path]]:
    """Load the config, make the run folder (--out, else <output_dir>/<name>, never outside
    output_dir), save the config there. `reads_data`: the data folder is the user's, which
    --overwrite must not delete (the demo's is its own: it writes it into the run as data/).

    Should the block fail before the first checkpoint (a data folder that does not exist, a
    model option refused, Ctrl-C in the first epoch), a folder this call made is removed again,
    and one that was empty before is emptied again; only when it holds nothing but this run's
    own files (WRITTEN_BEFORE_CHECKPOINT, the demo's data/): anything else keeps it whole."""
    config = load_config(resolve_config(config_path) if config_path else None, overrides)
    check_task(config)  # a model of the other task: refused before the run folder is made
    run_dir = Path(out) if out else run_dir_for(config.output_dir, config.name)
    data = config.data
    reads = [data.root] if reads_data and data.kind == "folder" and data.root else []
    made, emptied = not run_dir.exists() and not run_dir.is_symlink(), _is_empty_folder(run_dir)
    try:
        with main_rank_only(lambda: run_folder(run_dir, overwrite, reads, "train"), run_dir):
            if distributed.is_main():
                save_config(config, run_dir / "config.yaml")
            distributed.barrier()
            yield config, run_dir
    except BaseException:
        if distributed.is_main() and (made or emptied):  # after the lock is released
            own = WRITTEN_BEFORE_CHECKPOINT | ({"data"} if not reads_data else set())
            _take_back(run_dir, own, remove_folder=made)
        raise


def _is_empty_folder(path: Path) -> bool:
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:  # unreadable: run_folder gives the clear error
        return False


def _take_back(run_dir: Path, own: frozenset[str] | set[str], remove_folder: bool) -> None:
    """Delete what a failed run wrote into run_dir, and run_dir itself if `remove_folder`, when
    every entry is one of `own` (so never last.pt, nor a file someone else put there)."""
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return
    if run_dir.is_symlink() or any(entry.name not in own for entry in entries):
        return
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if remove_folder:
        with suppress(OSError):  # something appeared in it meanwhile: it stays, with that
            run_dir.rmdir()


@contextmanager
def resumed_run(run: str, overrides: list[str]) -> Iterator[tuple[Config, Path]]:
    """The config of an existing run, plus overrides (e.g. more epochs), to continue it. `run`:
    the run's folder, or the last.pt in it."""
    run_path = resumed_folder_of(run)
    with main_rank_only(lambda: resumed_folder(run_path), run_path):
        if not (run_path / "last.pt").is_file():
            raise FcnsegError(
                f"--resume {run}: {run_path} holds no last.pt, the checkpoint a run writes at "
                "the end of each epoch, so there is nothing to continue (the run stopped in its "
                f"first epoch); start it again with --out {run_path} --overwrite."
            )
        config = build_config(load_checkpoint(run_path / "last.pt")["config"], overrides)
        if distributed.is_main():
            save_config(config, run_path / "config.yaml")
        distributed.barrier()
        yield config, run_path


def resumed_folder_of(run: str) -> Path:
    """The run folder `--resume RUN` names: RUN itself, or the folder of RUN=.../last.pt."""
    path = Path(run)
    if path.suffix != ".pt" or path.is_dir():
        return path
    if path.name != "last.pt":
        raise FcnsegError(
            f"--resume {run}: a run continues from its last.pt (the state after its latest "
            f"epoch, optimizer included), not from {path.name}; give the run folder "
            f"{path.parent} or {path.parent / 'last.pt'}."
        )
    return path.parent


def main_rank_only(
    folder: Callable[[], AbstractContextManager[Path]], path: Path
) -> AbstractContextManager[Path]:
    """`folder()` on rank 0 (or in a plain process); elsewhere the path, untouched."""
    return folder() if distributed.is_main() else nullcontext(path)


def check_task(config: Config) -> None:
    """Refuse a model of the other task (a semantic model with task: instance, or the reverse)
    before any data is read: its outputs would not fit the data, the loss or the metrics."""
    model_task = task_of(config.model.name)  # an unknown name: the registry's error, with choices
    if model_task != config.task:
        choices = ", ".join(list_models(task=config.task))
        article = "an" if model_task == "instance" else "a"
        raise FcnsegError(
            f"task is {config.task} but model.name '{config.model.name}' is {article} "
            f"{model_task} model; for task {config.task} choose one of: {choices}; or set "
            f"task: {model_task}."
        )


def run_summary(
    config: Config, state: Any, device: Any, images: tuple[int, int], checkpoint: str
) -> dict[str, str]:
    """The head of a run's report: model, data (train / val images), training, checkpoint."""
    data = config.data
    train_images, val_images = images
    return {
        "model": f"{config.model.name} {config.model.options or ''}".strip(),
        "data": f"{data.kind} {data.root or ''}".strip()
        + f" ({train_images} train / {val_images} {data.val_split} images)",
        "training": f"{state.epoch} epochs, {state.step} steps, "
        f"{state.elapsed_seconds:.0f} s on {device}",
        "checkpoint": checkpoint,
    }


@contextmanager
def status(text: str, enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """`text` with a spinner and the seconds so far, on the terminal only, while the block runs
    (for a step that has nothing to count); yields a function that changes the text. Gone when
    the block ends: the lines that stay are the results."""
    if not enabled or not distributed.is_main():
        yield lambda new_text: None
        return
    with Console().status(text) as line:
        yield lambda new_text: line.update(new_text)


def score_line(run_dir: Path) -> str:
    """The headline of run_dir's metrics.json, in per cent with two decimals as report.html
    shows them: mIoU (with its 95% interval), pixel accuracy and mean Dice of a semantic model;
    mask AP, AP50 and the DSB score of an instance model. Empty without metrics.json."""
    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return ""
    if "miou" in metrics:
        interval = metrics.get("miou_95ci")
        low_high = f" (95% CI {_percent(interval[0])}-{_percent(interval[1])})" if interval else ""
        accuracy, dice = _percent(metrics.get("pixel_accuracy")), _percent(metrics.get("dice"))
        return (
            f"mIoU {_percent(metrics['miou'])} %{low_high}  pixel accuracy {accuracy} %  "
            f"mean Dice {dice} %"
        )
    return (
        f"mask AP {_percent(metrics.get('ap'))} %  AP50 {_percent(metrics.get('ap50'))} %  "
        f"DSB score {_percent(metrics.get('dsb_score'))} %"
    )


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"
