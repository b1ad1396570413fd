"""The instance task's contract, shared by instance models, their losses, inference and metrics.

    dataset item      (image (C, H, W) float, target (2, H, W) int64)
                      target[0]: instance IDs, 0 = background (and void);
                      target[1]: the class of each pixel's instance, 0 = background,
                                 ignore_index where the pixel is void (neither learned nor scored)
    model forward     raw maps (a dict of tensors), model-specific; training turns them into a
                      loss, inference into Instances
    Instances         per image, after post-processing, at the image's own size

Two channels instead of "an ID map plus a class per ID" keep a batch one tensor that the default
DataLoader stacks and augmentations crop like a mask; the classes per ID are read back as the
class under each instance's pixels (`classes_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Instances:
    """The objects found in one image: M masks with a class and a confidence each."""

    masks: torch.Tensor  # (M, H, W) bool
    classes: torch.Tensor  # (M,) int64, 1..C (0 is background and never an instance)
    scores: torch.Tensor  # (M,) float in [0, 1]

    def __len__(self) -> int:
        return int(self.scores.numel())

    @classmethod
    def empty(cls, height: int, width: int) -> Instances:
        return cls(
            torch.zeros(0, height, width, dtype=torch.bool),
            torch.zeros(0, dtype=torch.int64),
            torch.zeros(0),
        )

    def id_map(self) -> torch.Tensor:
        """(H, W) int64 map: instance i is ID i + 1, 0 is background; where masks overlap,
        the higher-scoring instance keeps the pixel (painted last)."""
        height, width = self.masks.shape[-2:]
        ids = torch.zeros(height, width, dtype=torch.int64)
        for index in self.scores.argsort().tolist():  # lowest score first
            ids[self.masks[index]] = index + 1
        return ids


def classes_of(target: torch.Tensor) -> dict[int, int]:
    """{instance ID: class} of one (2, H, W) target: the most frequent class under each ID."""
    ids, classes = target[0].flatten(), target[1].flatten()
    found: dict[int, int] = {}
    for instance in ids.unique().tolist():
        if instance == 0:
            continue
        values, counts = classes[ids == instance].unique(return_counts=True)
        found[instance] = int(values[counts.argmax()])
    return found
