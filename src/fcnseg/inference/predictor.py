"""The one inference path: trainer validation, `fcnseg evaluate`, `predict` and export checks.

    images (N, C, H, W) normalised
      -> views: each scale x (as is, flipped)           test-time augmentation, when asked for
      -> whole image in one pass, or overlapping tiles  chosen from the image size and a memory
         blended (fcnseg.inference.tiling)                         budget, or forced by `mode`
      -> network (N, K, h, w) logits                    a torch module or an ONNX session
      -> views mapped back and averaged as probabilities
      -> dense CRF, when asked for (fcnseg.models.crf)    per tile, inside the blending, if tiled
      -> scores (N, K, H, W) -> labels (N, H, W) by argmax (K == 1: logit > 0)

Models take any input size (they pad to their stride and crop back: models/base.py), so the
whole-image path is one forward pass. Augmented views are always mapped back to the input's own
size, so the output size never differs from the input's, odd sizes included. With augmentation
the scores are log mean probabilities, which argmax and blend like logits. Tiles are augmented
one by one, which lets a huge image be predicted in bands with augmentation too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.config import DataConfig
from fcnseg.errors import FcnsegError
from fcnseg.inference.options import InferenceOptions
from fcnseg.inference.tiling import ReadRows, blended_bands, make_grid, tiled_logits
from fcnseg.models.crf import colour_image, dense_crf
from fcnseg.palette import PALETTE

if TYPE_CHECKING:
    from fcnseg.data.dataset import SegmentationDataset
from fcnseg.metrics.confusion import ConfusionMatrix

LIVE_ACTIVATION_SHARE = 0.4


def labels_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) logits -> (N, H, W) int64 labels; K == 1 means binary (logit > 0 is class 1)."""
    if logits.shape[1] == 1:
        return (logits[:, 0] > 0).long()
    return logits.argmax(dim=1)


def probabilities_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over classes; sigmoid for a single-output binary model."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(dim=1)


def logits_from_probabilities(probabilities: torch.Tensor) -> torch.Tensor:
    """The inverse up to a constant per pixel: log p (softmax), log p / (1 - p) (sigmoid)."""
    p = probabilities.clamp(1e-7, 1 - 1e-7)
    return torch.log(p) - torch.log1p(-p) if p.shape[1] == 1 else torch.log(p)


class Predictor:
    """Runs a network for inference on batches of normalised images (see the module docstring).

    `model` is a torch module, or any callable (N, C, H, W) -> (N, K, H, W) such as
    fcnseg.export.OnnxModel; `transform` normalises raw uint8 images as training did.
    """

    def __init__(
        self,
        model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        device: torch.device | str = "cpu",
        transform: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
        | None = None,
        options: InferenceOptions | None = None,
        class_names: list[str] | None = None,
        palette: np.ndarray | None = None,
        data: DataConfig | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device) if isinstance(model, nn.Module) else model
        self.transform = transform
        self.options = options or InferenceOptions()
        self.class_names = class_names  # what each label means (fcnseg.load fills these in)
        self.palette = PALETTE if palette is None else palette  # (256, 3) colour of each label
        self.data = data  # how the model's images are read: mode, alpha, bit depth, scaling
        self.checkpoint: dict[str, Any] = {}  # the checkpoint's facts, without its tensors
        self.source: Path | None = None  # the file it was loaded from
        self._bytes_per_pixel: float | None = None

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """A raw (H, W, C) uint8 image -> (H, W) int64 labels, normalised as in training."""
        return self.labels(self.normalise(image)[None])[0].numpy()

    def normalise(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, C) uint8 -> (C, H, W) float32, as the training data was."""
        if self.transform is None:
            raise ValueError(
                "this Predictor has no transform for raw images; "
                "fcnseg.load(checkpoint) makes one that has"
            )
        tensor, _ = self.transform(image, np.zeros(image.shape[:2], dtype=np.int64))
        return tensor

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float -> (N, K, H, W) float scores on the CPU (logits; with test-time
        augmentation, log mean probabilities), whole or tiled as the options say."""
        n, channels, height, width = images.shape
        expected = self.in_channels()
        if expected is not None and channels != expected:
            raise FcnsegError(
                f"the model takes {expected}-channel images but got {channels} channels; read "
                "images the way its training data was (data.image_mode, data.image_alpha)."
            )
        if not self.use_tiles(n, height, width):
            return self.scores(images)
        options = self.options
        stride = getattr(self.model, "size_divisor", 1)  # a model's deepest stride
        if options.tile_size < stride:
            raise FcnsegError(
                f"--tile-size {options.tile_size} is below the model's stride {stride}: every "
                f"tile would be mostly padding. Use tiles of at least {stride} pixels."
            )
        return torch.stack(
            [
                tiled_logits(
                    self.scores,
                    image,
                    options.tile_size,
                    options.overlap,
                    options.blend,
                    options.tile_batch,
                )
                for image in images
            ]
        )

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K, H, W) class probabilities (averaged over augmented views)."""
        return probabilities_from_logits(self.logits(images))

    def labels(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float -> (N, H, W) int64 labels."""
        return labels_from_logits(self.logits(images))

    def label_bands(
        self, read_rows: ReadRows, height: int, width: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Tiled labels of an image read on demand: (top, (rows, W) int64 labels) bands, top
        to bottom, each final when yielded; memory grows with the tile size and image width."""
        options = self.options
        grid = make_grid(height, width, options.tile_size, options.overlap)
        bands = blended_bands(self.scores, read_rows, grid, options.blend, options.tile_batch)
        for top, logits in bands:
            yield top, labels_from_logits(logits[None])[0]

    def evaluate(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        matrix: ConfusionMatrix,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> float:
        """Accumulate every (image, mask) batch into `matrix`; with `loss_fn(logits, masks)`,
        return its mean over the images (validation loss; NaN without one)."""
        total, images_seen = 0.0, 0
        for images, masks in batches:
            logits = self.logits(images)  # (N, K, H, W) at the masks' size
            matrix.update(labels_from_logits(logits), masks)
            if loss_fn is not None:
                total += float(loss_fn(logits.float(), masks)) * len(images)
                images_seen += len(images)
        return total / images_seen if images_seen else math.nan

    def use_tiles(self, count: int, height: int, width: int) -> bool:
        """Whether (count, C, height, width) images go through tiles: the mode, or in "auto",
        whether a whole-image pass at the largest scale would exceed the memory budget."""
        if self.options.mode != "auto":
            return self.options.mode == "tiled"
        if max(height, width) <= self.options.tile_size:
            return False  # tiling would be a single tile anyway
        pixels = count * height * width * max(self.options.scales) ** 2
        return pixels * self.bytes_per_pixel() > self.options.memory_budget_mb * 2**20

    def in_channels(self) -> int | None:
        """Channels the network takes: its first convolution's, or the runner's `in_channels`."""
        if not isinstance(self.model, nn.Module):
            return getattr(self.model, "in_channels", None)
        first_weight = next((p for p in self.model.parameters() if p.dim() == 4), None)
        return None if first_weight is None else first_weight.shape[1]

    def bytes_per_pixel(self) -> float:
        """Estimated peak bytes per input pixel of a whole-image pass (LIVE_ACTIVATION_SHARE)."""
        if self._bytes_per_pixel is None:
            estimate = getattr(self.model, "bytes_per_pixel", None)
            if estimate is None and isinstance(self.model, nn.Module):
                estimate = activation_bytes_per_pixel(self.model, self.device)
            self._bytes_per_pixel = float(estimate or 4096)  # unknown network: assume a big one
        return self._bytes_per_pixel

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K, H, W): the network's scores over the augmented views, refined
        by the dense CRF when the options have one (then log-probabilities).

        Tiled inference calls this per tile, so the CRF runs inside each tile and the tiles'
        log-probabilities are blended: its memory stays bounded by the tile's, as the network's
        does, rather than growing with the image after stitching. A pixel's CRF result depends
        on pixels up to iterations x (window // 2) x dilation away (100 px with the defaults), so
        tiles overlapping by more than that (--overlap 0.25 of 512 is 128 px) agree with the
        whole image nearly everywhere.
        """
        logits = self.run_views(images)
        if self.options.crf is None:
            return logits
        if self.data is None:
            raise FcnsegError(
                "the dense CRF (--crf) compares the images' colours, but this Predictor has no "
                "data config to de-normalise them with; make it with fcnseg.load or "
                "predictor_for, or give Predictor(..., data=DataConfig(mean=..., std=...))."
            )
        colours = colour_image(images, self.data.mean, self.data.std)  # (N, 3, H, W) 0..255
        with torch.inference_mode():
            refined = dense_crf(logits.to(self.device), colours.to(self.device), self.options.crf)
        return refined.cpu()

    def run_views(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K, H, W) scores of the network, averaged over augmented views."""
        if not self.options.augmented:
            return self.run_network(images)
        height, width = images.shape[-2:]
        total, views = None, 0
        for scale in self.options.scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            scaled = images if size == (height, width) else _resize(images, size)
            for flip in (False, True) if self.options.flip else (False,):
                logits = self.run_network(scaled.flip(-1) if flip else scaled)
                logits = logits.flip(-1) if flip else logits
                if logits.shape[-2:] != (height, width):
                    logits = _resize(logits, (height, width))
                probabilities = probabilities_from_logits(logits)
                total = probabilities if total is None else total + probabilities
                views += 1
        return logits_from_probabilities(total / views)

    def run_network(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, K, H, W) float32 logits on the CPU: one plain forward pass."""
        if not isinstance(self.model, nn.Module):
            return self.model(images)
        images = images.to(self.device)
        if _is_channels_last(self.model):
            images = images.contiguous(memory_format=torch.channels_last)
        bf16 = self.options.precision == "bf16"
        autocast = torch.autocast(self.device.type, torch.bfloat16) if bf16 else nullcontext()
        with torch.inference_mode(), autocast, eval_mode(self.model):
            return self.model(images).float().cpu()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run `model` in eval mode (batch norm on running statistics, no dropout), then hand every
    module back in the mode it had: the caller's model is not changed."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def sample_predictions(
    predictor: Predictor, dataset: SegmentationDataset, count: int = 4
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(raw image, truth, prediction) for the first `count` items of a dataset, for pictures."""
    samples = []
    for index in range(min(count, len(dataset))):
        image, truth = dataset.source.load(index)
        tensor, _ = dataset.transform(image, truth)
        prediction = predictor.labels(tensor[None])[0].numpy()
        samples.append((image, truth, prediction))
    return samples


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-D weight is stored channels-last (NHWC)."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            return parameter.is_contiguous(memory_format=torch.channels_last) and not (
                parameter.is_contiguous()  # a 1x1 kernel is both; then NCHW is as good
            )
    return False


def activation_bytes_per_pixel(
    model: nn.Module, device: torch.device, channels: int | None = None, probe: int = 64
) -> float:
    """Estimated peak bytes per input pixel of an eval forward pass: the sizes of all leaf
    modules' outputs on a probe image, times LIVE_ACTIVATION_SHARE (not all live at once)."""
    first_weight = next((p for p in model.parameters() if p.dim() == 4), None)
    channels = channels or (first_weight.shape[1] if first_weight is not None else 3)
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [leaf.register_forward_hook(count) for leaf in leaves]
    try:
        with torch.inference_mode(), eval_mode(model):
            model(torch.zeros(1, channels, probe, probe, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return LIVE_ACTIVATION_SHARE * total / probe**2
