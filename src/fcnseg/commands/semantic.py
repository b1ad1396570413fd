"""What each command does, as plain functions of typed arguments (cli.py only parses argv).

train(config)      data -> model -> Trainer.fit -> best checkpoint -> metrics + report
demo(out, task)    generate shapes on disk, then train the packaged demo (demo_instance, or
                   a model's own demo recipe such as demo_fcis)
evaluate(ckpt)     a checkpoint over a folder split -> metrics.json, report.md, report.html
inspect(data)      the label doctor's account of a dataset (fcnseg.data.doctor.inspect)

(`predict`, images -> masks and overlays, in one process or under torchrun, is
commands/prediction.py.) On the terminal, each step that takes more than a moment shows a bar
with the time left, or where nothing can be counted a status line (runs.status).

Each command serves both tasks: where config.task (or the checkpoint's model) is instance, it
hands over to commands/instances.py after the steps the tasks share.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fcnseg.checkpoint import ModelSpec, load_checkpoint
from fcnseg.commands import instances as instance_commands
from fcnseg.commands.prediction import use_crf
from fcnseg.commands.runs import (
    REPORT_STATUS,
    check_task,
    resolve_config,
    run_summary,
    started_run,
    status,
)
from fcnseg.config import Config, LossConfig, load_config, scored_classes
from fcnseg.data import make_dataset, make_loader, write_shapes_folder
from fcnseg.data.dataset import SegmentationDataset
from fcnseg.data.doctor.inspect import Inspection, check_before_training, inspect_data
from fcnseg.data.doctor.report import format_report, inspection_dict, training_scan
from fcnseg.data.folder import image_channels
from fcnseg.data.instances import write_instance_shapes_folder
from fcnseg.errors import FcnsegError
from fcnseg.export.pipeline import export_checkpoint
from fcnseg.inference import InferenceOptions, InstancePredictor, load, predictor_for
from fcnseg.inference.loading import resolve_device
from fcnseg.inference.predictor import sample_predictions
from fcnseg.losses import (
    build_loss,
    count_class_pixels,
    median_frequency_weights,
    resolve_class_weights,
)
from fcnseg.registry import lookup
from fcnseg.report.evaluation import evaluate as evaluate_split
from fcnseg.report.figures import plot_class_pixels
from fcnseg.report.run_report import training_history, write_run_report
from fcnseg.storage.folders import run_folder
from fcnseg.training import distributed
from fcnseg.training.trainer import Trainer

DEMO_RECIPES: dict[str, str] = {"semantic": "demo", "instance": "demo_instance"}  # --task
# A model whose defaults are far from CPU-demo sized gets its own demo recipe; any other model
# named with --set model.name=... trains on the task's recipe with its own default options.
MODEL_DEMO_RECIPES: dict[tuple[str, str], str] = {("instance", "fcis"): "demo_fcis"}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: Config, run_dir: Path, resume: bool = False, show_progress: bool = True) -> Path:
    """Train `config` into run_dir (fresh, or continuing its last.pt); returns the report path."""
    check_task(config)  # before any data is read
    seed_everything(config.train.seed)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = distributed.local_device(resolve_device(config.train.device))
    if config.task == "instance":
        return instance_commands.train(config, run_dir, resume, show_progress, device)
    with status("reading the data", show_progress) as say:
        trainer, train_set, val_set = _trainer(config, run_dir, show_progress, device, say)
        if resume:
            trainer.resume(run_dir / "last.pt")
    trainer.fit()
    if not distributed.is_main():
        return run_dir / "report.md"  # rank 0 writes it
    return _final_report(config, trainer, val_set, len(train_set), show_progress)


def _trainer(
    config: Config,
    run_dir: Path,
    show_progress: bool,
    device: torch.device,
    say: Callable[[str], None],
) -> tuple[Trainer, SegmentationDataset, SegmentationDataset]:
    """The Trainer of a semantic run, and its training and validation sets; `say` tells the
    terminal which step of the set-up is under way."""
    data = config.data
    train_set = make_dataset(data, data.train_split, train=True, seed=config.train.seed)
    val_set = make_dataset(data, data.val_split, train=False)
    class_names = _class_names(config, train_set.source.class_names)
    palette = val_set.palette[: scored_classes(data.num_classes)]  # the dataset's, or fcnseg's
    # The label doctor reads every mask before the first step; its counts give class weights.
    say("checking every label (the label doctor)")
    inspection = check_before_training(data) if data.kind == "folder" else None
    say(f"building {config.model.name}")
    channels = image_channels(data.image_mode, data.image_alpha)
    spec = ModelSpec(config.model.name, data.num_classes, channels, dict(config.model.options))
    loss = build_loss(
        _loss_config(config, train_set, inspection), data.num_classes, data.ignore_index
    )
    trainer = Trainer(
        config,
        spec.build(),
        make_loader(
            train_set,
            data.batch_size,
            True,
            config.train.seed,
            data.num_workers,
            world_size=distributed.world_size(),
            rank=distributed.rank(),
        ),
        distributed.evaluation_loader(val_set, data.batch_size, data.num_workers),
        loss,
        run_dir,
        class_names,
        spec,
        device,
        show_progress,
        palette=palette,
    )
    return trainer, train_set, val_set


def _final_report(
    config: Config,
    trainer: Trainer,
    val_set: SegmentationDataset,
    train_images: int,
    show_progress: bool = False,
) -> Path:
    """Evaluate best.pt on the validation split and write the run's report."""
    best = load_checkpoint(trainer.run_dir / "best.pt")
    model, data = trainer.model, config.data
    model.load_state_dict(best["state_dict"])
    predictor = predictor_for(
        model, data, trainer.device, class_names=trainer.class_names, palette=trainer.palette
    )
    evaluation = evaluate_split(
        predictor, val_set, data.num_classes, data.ignore_index, show_progress=show_progress
    )
    state = trainer.state
    checkpoint = f"best.pt (epoch {best['epoch']}, val mIoU {best['best_miou']:.4f})"
    images = (train_images, len(val_set))
    summary = run_summary(config, state, trainer.device, images, checkpoint)
    with status(REPORT_STATUS, show_progress):
        return write_run_report(
            trainer.run_dir,
            evaluation,
            trainer.class_names,
            sample_predictions(predictor, val_set),
            state.history,
            title=f"fcnseg run: {config.name}",
            summary=summary,
            palette=predictor.palette,
        )


def _loss_config(
    config: Config, train_set: SegmentationDataset, inspection: Inspection | None
) -> LossConfig:
    """The loss config, with named `class_weights` (median_frequency, ...) from the training
    split's class counts: the label doctor's when it scanned the data, else counted here."""
    data = config.data

    def counts() -> tuple[np.ndarray, np.ndarray]:
        if inspection is not None:
            scan = training_scan(inspection, data.train_split)
            return scan.class_pixels, scan.presence_pixels
        masks = (train_set.source.load(index)[1] for index in range(len(train_set)))
        return count_class_pixels(masks, data.num_classes, data.ignore_index)

    return resolve_class_weights(config.loss, counts, data.num_classes)


def _class_names(config: Config, dataset_names: list[str]) -> list[str]:
    names = config.data.class_names or dataset_names
    if len(names) != scored_classes(config.data.num_classes):  # 2 for a one-output model
        raise FcnsegError(
            f"data.num_classes is {config.data.num_classes} but there are {len(names)} class "
            f"names ({', '.join(names)}); make them agree (a one-output model has 2)."
        )
    return list(names)


def demo(
    out: Path,
    overwrite: bool,
    overrides: list[str],
    show_progress: bool = True,
    task: str = "semantic",
) -> Path:
    """Generate shapes into <out>/data (instance shapes for task "instance"), train the demo
    recipe of the task (demo, demo_instance) on those files, write the report."""
    recipe, overrides = demo_recipe(task, overrides)
    root = Path(out) / "data"
    overrides = ["data.kind=folder", f"data.root={root}", *overrides]
    with started_run(recipe, overrides, str(out), overwrite, reads_data=False) as (config, run):
        data = config.data
        counts = {data.train_split: data.synthetic_train, data.val_split: data.synthetic_val}
        instance = config.task == "instance"
        write = write_instance_shapes_folder if instance else write_shapes_folder
        pictures = " and ".join(f"{count} {split}" for split, count in counts.items())
        with status(f"drawing {pictures} images of shapes into {run / 'data'}", show_progress):
            write(run / "data", counts, data.synthetic_size, config.train.seed)
        return train(config, run, show_progress=show_progress)


def demo_recipe(task: str, overrides: list[str]) -> tuple[str, list[str]]:
    """The packaged recipe `fcnseg demo --task TASK` trains, and the overrides to apply to it.

    With --set model.name=NAME, the recipe's model options are its own model's, so they are
    dropped (the named model's defaults apply, before any --set model.options...), unless NAME
    has a demo recipe of its own (MODEL_DEMO_RECIPES) sized for a few CPU minutes."""
    recipe = lookup(DEMO_RECIPES, task, "demo task")
    split = [override.partition("=") for override in overrides]
    keys = [key.strip() for key, _, _ in split]
    names = [value.strip() for key, _, value in split if key.strip() == "model.name"]
    if not names:
        return recipe, overrides
    if (task, names[-1]) in MODEL_DEMO_RECIPES:
        return MODEL_DEMO_RECIPES[(task, names[-1])], overrides
    if any(key.startswith("model.options") for key in keys):
        return recipe, overrides
    return recipe, ["model.options={}", *overrides]


def evaluate(
    checkpoint_path: str,
    data_dir: str,
    split: str,
    out: str | None,
    overwrite: bool,
    options: InferenceOptions | None = None,
    crf: list[str] | None = None,
    show_progress: bool = False,
) -> Path:
    """Every score of a checkpoint on a split, through the Predictor with `options` (tiles,
    test-time augmentation) and the dense CRF when `crf` is a list of --crf-set overrides
    (see use_crf), into metrics.json, report.md and report.html."""
    predictor = load(checkpoint_path, options=options)
    use_crf(predictor, crf)
    if isinstance(predictor, InstancePredictor):  # mask AP and DSB instead of mIoU
        return instance_commands.evaluate(
            predictor, checkpoint_path, data_dir, split, out, overwrite, show_progress
        )
    data = replace(predictor.data, kind="folder", root=data_dir, val_split=split)
    dataset = make_dataset(data, split, train=False)
    dataset.source.check_labels()
    out_dir = Path(out) if out else Path(checkpoint_path).parent / f"evaluation-{split}"
    with run_folder(out_dir, overwrite, [checkpoint_path, data_dir], "evaluate"):
        evaluation = evaluate_split(
            predictor, dataset, data.num_classes, data.ignore_index, show_progress=show_progress
        )
        checkpoint = predictor.checkpoint
        with status(REPORT_STATUS, show_progress):
            return write_run_report(
                out_dir,
                evaluation,
                predictor.class_names,
                sample_predictions(predictor, dataset),
                training_history(checkpoint_path, checkpoint),
                title=f"fcnseg evaluation: {checkpoint_path} on {data_dir}/{split}",
                summary={
                    "images": len(dataset),
                    "checkpoint": f"epoch {checkpoint.get('epoch')}",
                    **({"dense CRF": predictor.options.crf} if predictor.options.crf else {}),
                },
                palette=dataset.palette,
            )


def inspect(
    data_dir: str | None,
    config_path: str | None,
    overrides: list[str],
    out: str | None,
    overwrite: bool = False,
) -> tuple[str, bool]:
    """The label doctor on a dataset folder (or a config's data.root): report text, and whether
    training could start. Writes class_pixels.png and inspect.json to `out` (a new folder, or
    with `overwrite` an fcnseg one). With task: instance, the instance doctor's statistics,
    inspect.json and instance_sizes.png."""
    config = load_config(resolve_config(config_path) if config_path else None, overrides)
    data = config.data if data_dir is None else replace(config.data, kind="folder", root=data_dir)
    if config.task == "instance":  # the instance doctor's statistics, chart and JSON
        name = Path(data.root).resolve().name if data.root else "shapes"
        return instance_commands.inspect(data, Path(out or f"runs/inspect-{name}"), overwrite)
    if data.kind != "folder" or data.root is None:
        raise FcnsegError("fcnseg inspect needs a DATA_DIR, or a --config whose data.root is set.")
    # Without a config, the class count comes from the class table or the masks themselves.
    infer = config_path is None and not any(o.startswith("data.num_classes=") for o in overrides)
    inspection = inspect_data(data, infer_classes=infer)
    scan = training_scan(inspection, data.train_split)
    weights = median_frequency_weights(scan.class_pixels, scan.presence_pixels)
    out_dir = Path(out or f"runs/inspect-{Path(data.root).resolve().name}")
    with run_folder(out_dir, overwrite, [data.root], "inspect"):
        plot_class_pixels(inspection, out_dir / "class_pixels.png")
        summary = inspection_dict(inspection, data.train_split, weights)
        (out_dir / "inspect.json").write_text(json.dumps(summary, indent=1))
    chart = out_dir / "class_pixels.png"
    report = format_report(inspection, data.train_split, weights, chart)
    return report, not inspection.errors


# `fcnseg export`: a checked ONNX model (and an int8 one, judged). The export pipeline is the
# command itself (it refuses instance checkpoints with a clear message), so it is used as is.
export = export_checkpoint
