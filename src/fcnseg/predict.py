"""The one inference path: trainer validation, `fcnseg evaluate` and `fcnseg predict` use it.

Models take any input size themselves (see models/base.py), so whole-image inference is one
forward pass in eval mode under `inference_mode`. Labels come from logits by argmax, or, for a
single-output binary model, by the sign of the logit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from fcnseg.metrics import ConfusionMatrix


def labels_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) logits -> (N, H, W) int64 labels; K == 1 means binary (logit > 0 is class 1)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


class Predictor:
    """Runs a model for inference on batches of normalised images."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str = "cpu",
        transform: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
        | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.transform = transform  # raw uint8 image -> normalised tensor, as in training

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """A raw (H, W, C) uint8 image -> (H, W) int64 labels, normalised as in training."""
        if self.transform is None:
            raise ValueError("predict_image needs the Predictor's transform (see from_checkpoint)")
        tensor, _ = self.transform(image, np.zeros(image.shape[:2], dtype=np.int64))
        return self.labels(tensor[None])[0].numpy()

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float -> (N, K, H, W) float logits on the CPU."""
        return self.model(images.to(self.device)).float().cpu()

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float -> (N, H, W) int64 labels."""
        return labels_from_logits(self.logits(images))

    def evaluate(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], matrix: ConfusionMatrix
    ) -> ConfusionMatrix:
        """Accumulate every (image, mask) batch into `matrix` and return it."""
        was_training = self.model.training
        self.model.eval()
        for images, masks in batches:
            matrix.update(self.labels(images), masks)
        self.model.train(was_training)
        return matrix
