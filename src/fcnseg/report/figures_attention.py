"""Where an attention model looks: its attention coefficients beside the images they weight.

attention_samples(predictor, dataset)  each gate's coefficients alpha on the first few images,
                                       for models with an `attention_maps(images)` method that
                                       returns some (Attention U-Net); [] for every other model
attention_figure(samples)              a row per image: the image, then one map per gate,
                                       alpha from 0 (skip feature suppressed) to 1 (passed
                                       unchanged), each map over its own range

The run report and `fcnseg evaluate` add the figure (attention.png, and a section of
report.html) when the samples are not empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.inference.predictor import Predictor, eval_mode
from fcnseg.report.figures import _subplots, figure_png

if TYPE_CHECKING:
    from fcnseg.data.dataset import SegmentationDataset

ATTENTION_IMAGES = 3


@dataclass(frozen=True)
class AttentionSample:
    """One image and the coefficients of each gate on it."""

    name: str
    image: np.ndarray  # (H, W, C) uint8
    maps: dict[str, np.ndarray]  # gate name -> (h, w) float alpha in [0, 1], on the gate's grid


def attention_samples(
    predictor: Predictor, dataset: SegmentationDataset, count: int = ATTENTION_IMAGES
) -> list[AttentionSample]:
    """The coefficients of every gate on the first `count` images of `dataset`, seen as the
    predictor sees them (at its first view's scale: data.inference_scale); [] when the model
    has no attention maps. Costs one forward pass per image, only for models with gates."""
    model = predictor.model
    maps_of = getattr(model, "attention_maps", None)
    if not isinstance(model, nn.Module) or maps_of is None:
        return []
    names = list(getattr(dataset.source, "names", [str(i) for i in range(len(dataset))]))
    samples = []
    for index in range(min(count, len(dataset))):
        image, truth = dataset.source.load(index)
        tensor, _ = dataset.transform(image, truth)  # (C, H, W) normalised
        scaled = _rescale(tensor[None], predictor.options.scales[0]).to(predictor.device)
        with eval_mode(model):
            maps = maps_of(scaled)  # {gate: (1, 1, h, w)}
        if not maps:
            return []  # a model that could have gates but has none (a plain U-Net)
        arrays = {name: alpha[0, 0].float().cpu().numpy() for name, alpha in maps.items()}
        samples.append(AttentionSample(names[index], image, arrays))
    return samples


def _rescale(images: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1:
        return images
    height, width = images.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def attention_figure(samples: Sequence[AttentionSample]) -> bytes:
    """PNG: a row per sample, the image and then each gate's alpha stretched over the image
    (deepest gate first). Each map spans its own range, written in its title: early in
    training alpha varies little around 0.5, and a fixed 0-1 scale would show flat maps."""
    gates = list(samples[0].maps)
    rows, columns = len(samples), 1 + len(gates)
    size = (2.6 * columns + 0.8, 2.4 * rows)
    figure, axes = _subplots(rows, columns, figsize=size, squeeze=False)
    shown = None
    for row, sample in enumerate(samples):
        height, width = sample.image.shape[:2]
        image = sample.image[..., 0] if sample.image.shape[-1] == 1 else sample.image[..., :3]
        axes[row, 0].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[row, 0].set_title(sample.name, size=9)
        for column, gate in enumerate(gates, start=1):
            alpha = sample.maps[gate]
            low, high = float(alpha.min()), float(alpha.max())
            # The map's cells cover the image (and the model's padding, cropped to under one
            # cell): stretching it over the image's extent lines it up with the pixels.
            shown = axes[row, column].imshow(
                alpha,
                cmap="viridis",
                vmin=low,
                vmax=max(high, low + 1e-6),
                extent=(0, width, height, 0),
            )
            axes[row, column].set_title(f"{gate}: alpha {low:.3f}-{high:.3f}", size=9)
        for axis in axes[row]:
            axis.set_axis_off()
    bar = figure.colorbar(shown, ax=axes, fraction=0.02, ticks=[])
    bar.set_label("alpha, from each map's minimum (dark) to its maximum (bright)")
    return figure_png(figure, dpi=80)
