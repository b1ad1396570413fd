"""Which config a training run uses and which folder it writes: `fcnseg train` and `demo`.

    started_run(config, ...)   the config (a YAML file or a packaged recipe, plus --set), and
                               a new run folder (fcnseg.storage.folders) with config.yaml in it
    resumed_run(run_dir, ...)  the config saved in the run's last.pt, plus --set, in the
                               run's own folder, which must be one fcnseg made
    check_task(config)         the model solves config.task (refused before the folder is made)

Both hold the folder's lock (fcnseg.storage.locks) until the block ends. Under torchrun rank 0 alone
makes, locks and writes the folder, while the other ranks wait for it at a barrier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from importlib import resources
from pathlib import Path
from typing import Any

from fcnseg.checkpoint import load_checkpoint
from fcnseg.config import Config, build_config, load_config, save_config
from fcnseg.errors import FcnsegError
from fcnseg.models import list_models, task_of
from fcnseg.registry import suggest
from fcnseg.storage.folders import resumed_folder, run_dir_for, run_folder
from fcnseg.training import distributed


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
    --overwrite must not delete (the demo's is its own: it writes it into the run)."""
    config = load_config(resolve_config(config_path) if config_path else None, overrides)
    check_task(config)  # a model of the other task: refused before the run folder is made
    run_dir = Path(out) if out else run_dir_for(config.output_dir, config.name)
    data = config.data
    reads = [data.root] if reads_data and data.kind == "folder" and data.root else []
    with _main_rank_only(lambda: run_folder(run_dir, overwrite, reads, "train"), run_dir):
        if distributed.is_main():
            save_config(config, run_dir / "config.yaml")
        distributed.barrier()
        yield config, run_dir


@contextmanager
def resumed_run(run_dir: str, overrides: list[str]) -> Iterator[tuple[Config, Path]]:
    """The config of an existing run, plus overrides (e.g. more epochs), to continue it."""
    run_path = Path(run_dir)
    with _main_rank_only(lambda: resumed_folder(run_path), run_path):
        config = build_config(load_checkpoint(run_path / "last.pt")["config"], overrides)
        if distributed.is_main():
            save_config(config, run_path / "config.yaml")
        distributed.barrier()
        yield config, run_path


def _main_rank_only(
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
