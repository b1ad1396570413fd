"""The commands for `task: instance`, called by commands/semantic.py where the task says so.

train(config, ...)       instance data -> instance model -> the Trainer with the model's own
                         loss and instance validation (training/tasks.py) -> best.pt by val AP
                         -> the report on val
evaluate(predictor, ...) an instance checkpoint over a split -> metrics.json, report.md,
                         report.html (fcnseg.report.instance_report)
use_export_if_asked(...) --backend onnx / --onnx for `fcnseg predict` (commands/prediction.py),
                         which writes ID maps, JSON, overlays (inference/instance_files.py)
inspect(data, ...)       the instance doctor's statistics of each split: lines, inspect.json
                         and instance_sizes.png

Like commands/semantic.py, only the command layer (cli.py) reaches this module.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from fcnseg.checkpoint import ModelSpec, load_checkpoint
from fcnseg.commands.runs import REPORT_STATUS, run_summary, status
from fcnseg.config import Config, DataConfig, scored_classes
from fcnseg.data import image_channels, make_loader
from fcnseg.data.instances import (
    InstanceDataset,
    InstanceStatistics,
    inspect_instances,
    make_instance_dataset,
)
from fcnseg.errors import FcnsegError
from fcnseg.inference.backends import matching_export
from fcnseg.inference.instances import (
    ExportedInstanceModel,
    InstancePredictor,
    instance_predictor_for,
)
from fcnseg.report.figures_instances import plot_instance_sizes
from fcnseg.report.instance_evaluation import evaluate_instances
from fcnseg.report.instance_report import write_instance_report
from fcnseg.report.run_report import training_history
from fcnseg.storage.folders import run_folder
from fcnseg.training import distributed
from fcnseg.training.tasks import InstanceTask, instance_loss
from fcnseg.training.trainer import Trainer


def train(
    config: Config, run_dir: Path, resume: bool, show_progress: bool, device: torch.device
) -> Path:
    """Train an instance model into run_dir (commands.train has seeded and chosen the device)."""
    with status(f"reading the data and building {config.model.name}", show_progress):
        trainer, train_set, val_set = _trainer(config, run_dir, show_progress, device)
        if resume:
            trainer.resume(run_dir / "last.pt")
    trainer.fit()
    if not distributed.is_main():
        return run_dir / "report.md"  # rank 0 writes it
    return _final_report(config, trainer, val_set, len(train_set), show_progress)


def _trainer(
    config: Config, run_dir: Path, show_progress: bool, device: torch.device
) -> tuple[Trainer, InstanceDataset, InstanceDataset]:
    """The Trainer of an instance run, and its training and validation sets."""
    data = config.data
    train_set = make_instance_dataset(data, data.train_split, train=True, seed=config.train.seed)
    val_set = make_instance_dataset(data, data.val_split, train=False)
    class_names = _class_names(config, train_set.source.class_names)
    channels = image_channels(data.image_mode, data.image_alpha)
    spec = ModelSpec(config.model.name, data.num_classes, channels, dict(config.model.options))
    model = spec.build()
    train_loader = make_loader(
        train_set,
        data.batch_size,
        True,
        config.train.seed,
        data.num_workers,
        world_size=distributed.world_size(),
        rank=distributed.rank(),
    )
    # Unsharded: every rank scores the whole split, as AP cannot be summed (training/tasks.py).
    val_loader = DataLoader(val_set, batch_size=data.batch_size, num_workers=data.num_workers)
    trainer = Trainer(
        config,
        model,
        train_loader,
        val_loader,
        instance_loss(model, data.ignore_index),  # the model's own; config.loss is not used
        run_dir,
        class_names,
        spec,
        device,
        show_progress,
        palette=val_set.palette[: len(class_names)],
        task=InstanceTask(),
    )
    return trainer, train_set, val_set


def _class_names(config: Config, dataset_names: list[str]) -> list[str]:
    names = config.data.class_names or dataset_names
    if len(names) != scored_classes(config.data.num_classes):
        raise FcnsegError(
            f"data.num_classes is {config.data.num_classes} but the instance data has "
            f"{len(names)} class names ({', '.join(names)}), background included; make them "
            "agree (data without a classes folder has 2: background and object)."
        )
    return list(names)


def _final_report(
    config: Config,
    trainer: Trainer,
    val_set: InstanceDataset,
    train_images: int,
    show_progress: bool = False,
) -> Path:
    """Evaluate best.pt on the validation split and write the run's report."""
    best = load_checkpoint(trainer.run_dir / "best.pt")
    model, data = trainer.model, config.data
    model.load_state_dict(best["state_dict"])
    predictor = instance_predictor_for(
        model, data, trainer.device, trainer.class_names, trainer.palette
    )
    evaluation = evaluate_instances(predictor, val_set, show_progress=show_progress)
    state = trainer.state
    checkpoint = f"best.pt (epoch {best['epoch']}, val AP {best['best_ap']:.4f})"
    images = (train_images, len(val_set))
    summary = run_summary(config, state, trainer.device, images, checkpoint)
    with status(REPORT_STATUS, show_progress):
        return write_instance_report(
            trainer.run_dir,
            evaluation,
            trainer.class_names,
            state.history,
            title=f"fcnseg run: {config.name}",
            summary=summary,
        )


def evaluate(
    predictor: InstancePredictor,
    checkpoint_path: str,
    data_dir: str,
    split: str,
    out: str | None,
    overwrite: bool,
    show_progress: bool = False,
) -> Path:
    """Every instance score of a checkpoint on a split of `data_dir` (the instance folder
    layout, or COCO for a model trained on COCO files) into metrics.json and the reports."""
    kind = "coco" if predictor.data.kind == "coco" else "folder"
    data = replace(predictor.data, kind=kind, root=data_dir, val_split=split)
    dataset = make_instance_dataset(data, split, train=False)
    out_dir = Path(out) if out else Path(checkpoint_path).parent / f"evaluation-{split}"
    with run_folder(out_dir, overwrite, [checkpoint_path, data_dir], "evaluate"):
        evaluation = evaluate_instances(predictor, dataset, show_progress=show_progress)
        checkpoint = predictor.checkpoint
        with status(REPORT_STATUS, show_progress):
            return write_instance_report(
                out_dir,
                evaluation,
                predictor.class_names,
                training_history(checkpoint_path, checkpoint),
                title=f"fcnseg evaluation: {checkpoint_path} on {data_dir}/{split}",
                summary={
                    "images": len(dataset),
                    "checkpoint": f"epoch {checkpoint.get('epoch')}",
                },
            )


def use_export_if_asked(
    predictor: InstancePredictor, checkpoint_path: str, backend: str, onnx_path: str | None
) -> str:
    """An instance checkpoint runs in PyTorch unless --backend onnx or --onnx FILE ask for its
    export (its raw maps in ONNX Runtime, the post-processing as in PyTorch): put that into
    the predictor. Returns a few words on the backend."""
    if isinstance(predictor.model, nn.Module) and (backend == "onnx" or onnx_path):
        source = predictor.source or Path(checkpoint_path)
        runner = matching_export(source, onnx_path, predictor.model.state_dict())
        spec = ModelSpec.from_dict(predictor.checkpoint["model"], source)
        predictor.model = ExportedInstanceModel(runner, spec)
    exported = isinstance(predictor.model, ExportedInstanceModel)
    return f"{'onnxruntime' if exported else 'PyTorch'} (post-processing in PyTorch)"


def inspect(data: DataConfig, out_dir: Path, overwrite: bool) -> tuple[str, bool]:
    """The instance doctor on the train and val splits: the report text, and whether training
    could start (no split with a problem). Writes inspect.json (every count, and the items
    behind it) and instance_sizes.png to `out_dir` (a new folder, or with `overwrite` an fcnseg
    one)."""
    splits = [inspect_instances(data, split) for split in (data.train_split, data.val_split)]
    with run_folder(out_dir, overwrite, [data.root] if data.root else [], "inspect"):
        plot_instance_sizes(splits, out_dir / "instance_sizes.png")
        summary = {"task": "instance", "splits": [split.to_dict() for split in splits]}
        (out_dir / "inspect.json").write_text(json.dumps(summary, indent=1))
    text, ready = inspect_text(splits)
    return f"{text}\nchart    {out_dir / 'instance_sizes.png'}", ready


def inspect_text(splits: list[InstanceStatistics]) -> tuple[str, bool]:
    """The statistics of each split as lines, and whether none has a problem."""
    lines, ready = [], True
    for statistics in splits:
        split = statistics.split
        spread = statistics.per_image
        per_image = "none" if spread is None else f"{spread[0]} / {spread[1]:.1f} / {spread[2]}"
        sizes = ", ".join(f"{key} {value}" for key, value in statistics.size_counts.items())
        classes = ", ".join(f"{k}: {v}" for k, v in sorted(statistics.class_counts.items()))
        lines += [
            f"{split}: {statistics.images} images, {len(statistics.areas)} instances",
            f"  instances per image (min / median / max): {per_image}",
            f"  sizes: {sizes}; instances per class: {classes or 'none'}",
            f"  touching pairs: {len(statistics.touching)}; overlapping (COCO): "
            f"{len(statistics.overlaps)}; images without instances: "
            f"{len(statistics.empty_images)}; one-pixel instances: {len(statistics.one_pixel)}",
        ]
        if statistics.without_map:
            lines.append(f"  images without an instance map: {len(statistics.without_map)}")
        for item, message in statistics.problems:
            lines.append(f"  problem{f' in {item}' if item else ''}: {message}")
        ready = ready and not statistics.problems
    return "\n".join(lines), ready
