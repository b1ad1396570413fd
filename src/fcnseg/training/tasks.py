"""What the Trainer validates, records and keeps best.pt by, for each task (config.task).

    SemanticTask   the Predictor over this rank's val batches into a confusion matrix, summed
                   over ranks; history: val_miou, val_pixel_accuracy; best.pt by val mIoU
    InstanceTask   the InstancePredictor over the val split into an InstanceEvaluator;
                   history: val_ap, val_ap50, val_dsb_score; best.pt by val AP (mask AP @
                   0.50:0.95, as COCO)

With train.val_images, each epoch's validation scores the first N val images only (best.pt is
chosen on them; the final report scores the whole split). Instance validation runs on every
rank over the whole split (or its first N), unsharded: COCO's AP pools every
detection of every image before it ranks them, so unlike a confusion matrix it cannot be summed
from per-rank parts. fcnseg's commands give an instance Trainer an unsharded val loader.

The loss is the Trainer's `loss_fn(outputs, target)`: a semantic loss module, or for an instance
model its own loss through `instance_loss`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from fcnseg.inference.instances import evaluation_max_detections, instance_predictor_for
from fcnseg.inference.predictor import sample_predictions
from fcnseg.metrics.confusion import ConfusionMatrix, Scores
from fcnseg.metrics.instances import InstanceEvaluator, InstanceScores
from fcnseg.training import distributed

if TYPE_CHECKING:
    from fcnseg.inference.instances import InstancePredictor
    from fcnseg.training.trainer import Trainer

Samples = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (image, truth, prediction) maps


class TrainingTask(Protocol):
    """The task-specific part of a Trainer (see the module docstring)."""

    best_field: str  # the TrainState field that holds the best epoch's score
    score_name: str  # what that score is called in the log

    def validate(self, trainer: Trainer) -> Any: ...
    def history_figures(self, scores: Any) -> dict[str, float]: ...
    def selection_score(self, scores: Any) -> float: ...
    def samples(self, trainer: Trainer, count: int) -> Samples: ...


class SemanticTask:
    """A class per pixel: scored by the confusion matrix."""

    best_field = "best_miou"
    score_name = "val mIoU"

    def __init__(self) -> None:
        self.loss = math.nan  # the last validation's mean loss (history: val_loss)

    def validate(self, trainer: Trainer) -> Scores:
        """Scores of the val batches; their mean loss (the training loss, on the whole val
        images as the Predictor scores them) is kept in self.loss for the history."""
        matrix = ConfusionMatrix(len(trainer.class_names), trainer.config.data.ignore_index)
        batches: Any = trainer.val_loader
        total = len(trainer.val_loader)
        limit = trainer.config.train.val_images
        if limit is not None:  # whole batches of this rank's share, at least `limit` images
            total = min(total, math.ceil(limit / trainer.config.data.batch_size))
            batches = itertools.islice(batches, total)
        batches = trainer.log.validation_bar(batches, total)
        loss_fn = trainer.loss_fn if callable(trainer.loss_fn) else None
        with trainer.autocast(), torch.no_grad():
            loss = trainer.predictor().evaluate(batches, matrix, loss_fn)
        distributed.sum_across_ranks(matrix.matrix)
        totals = distributed.sum_across_ranks(torch.tensor([loss, 1.0], dtype=torch.float64))
        self.loss = float(totals[0] / totals[1])  # the mean of the ranks' means
        return matrix.compute()

    def history_figures(self, scores: Scores) -> dict[str, float]:
        return {
            "val_miou": scores.miou,
            "val_pixel_accuracy": scores.pixel_accuracy,
            "val_loss": self.loss,
        }

    def selection_score(self, scores: Scores) -> float:
        return scores.miou

    def samples(self, trainer: Trainer, count: int) -> Samples:
        return sample_predictions(trainer.predictor(), trainer.val_loader.dataset, count=count)


class InstanceTask:
    """Objects told apart: scored by mask AP and the DSB 2018 score (fcnseg.metrics.instances).

    Validation runs in fp32 whatever train.precision says: post-processing thresholds
    probabilities at 0.5 and compares mask IoUs, which low precision would shift.
    """

    best_field = "best_ap"
    score_name = "val AP"

    def predictor(self, trainer: Trainer) -> InstancePredictor:
        data = trainer.config.data
        return instance_predictor_for(
            trainer.model, data, trainer.device, trainer.class_names, trainer.palette
        )

    def validate(self, trainer: Trainer) -> InstanceScores:
        """One image at a time, as evaluate_instances: val images keep their own sizes (DSB
        nuclei: 256x256 to 1388x1040), which the val loader's batches could not stack."""
        evaluator = InstanceEvaluator(evaluation_max_detections(trainer.model))
        dataset = trainer.val_loader.dataset
        count = min(len(dataset), trainer.config.train.val_images or len(dataset))
        images = (
            (image[None], target[None]) for image, target in map(dataset.__getitem__, range(count))
        )
        return self.predictor(trainer).evaluate(images, evaluator).compute()

    def history_figures(self, scores: InstanceScores) -> dict[str, float]:
        return {"val_ap": scores.ap, "val_ap50": scores.ap50, "val_dsb_score": scores.dsb_score}

    def selection_score(self, scores: InstanceScores) -> float:
        """AP; a split without any true instance has none (NaN), which ranks below every AP
        so that the first epoch still writes a best.pt."""
        return -1.0 if math.isnan(scores.ap) else scores.ap

    def samples(self, trainer: Trainer, count: int) -> Samples:
        """(image, true IDs, predicted IDs) of the first val images, for TensorBoard."""
        predictor, dataset = self.predictor(trainer), trainer.val_loader.dataset
        samples = []
        for index in range(min(count, len(dataset))):
            image, target = dataset.source.load(index)  # (H, W, C) uint8, (2, H, W)
            found = predictor.predict_image(image).id_map().numpy()
            samples.append((image, target[0], found))
        return samples


def instance_loss(
    model: nn.Module, ignore_index: int
) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """An instance model's own loss (`model.loss`) as the Trainer's loss_fn: the total only;
    the parts are the model's to report."""

    def loss(outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return model.loss(outputs, target, ignore_index)[0]

    return loss


def task_for(name: str) -> TrainingTask:
    """The TrainingTask of config.task."""
    return InstanceTask() if name == "instance" else SemanticTask()
