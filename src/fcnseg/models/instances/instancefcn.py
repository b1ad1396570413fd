"""InstanceFCN (Dai, He, Li, Ren, Sun, "Instance-sensitive Fully Convolutional Networks", ECCV
2016): k x k score maps, each scoring one relative position in an instance, assembled per window.

    x (N, C_in, H, W) -> pad bottom/right to a multiple of 8               (N, C_in, H', W')
      -> backbone at output stride 8 (dilated, not strided, past 8)        (N, C, H'/8, W'/8)
      -> score branch:      1x1 conv (512), ReLU, 3x3 conv                 (N, k*k, H'/8, W'/8)
      -> objectness branch: 3x3 conv (512), ReLU, 1x1 conv                 (N, S, H'/8, W'/8)
    training:  windows sampled per image (windows.py); logistic loss on their objectness; on
               positive windows, the assembled masks upsampled to the window's pixels against
               the instance's mask, per pixel
    inference: every position x every window size, the best assembled and thresholded at 0.5,
               NMS on mask IoU, pasted at the input's size (proposals.py) -> list[Instances]

Faithful: the dilated backbone (VGG-16 with pool4 at stride 1 and conv5 dilated by 2, or a ResNet
made output stride 8 the same way), both branches and their 512 widths, k = 5, the parameter-free
assembling, logistic objectness and per-pixel logistic mask losses (the latter on positive windows
only), 256 windows per image with positives and negatives 1:1, masks at probability 0.5, NMS on
mask IoU, objectness as the score.

Deviations, each for CPU cost or because the paper leaves it open:
- Several window sizes on one image (`window_sizes`) instead of one window (m = 21 cells) on an
  image pyramid: one forward pass instead of a pyramid's. The objectness branch then ends in one
  logit per window size, as a region proposal network has one per anchor.
- Which windows are positive: the paper takes DeepMask's rule; ours is stated in windows.py.
- Losses are means (objectness over sampled windows, masks over labelled pixels of positive
  windows) where the paper writes sums; the two are added with weight 1, as in the paper.
- Default backbone ResNet-18 (the paper: VGG-16, one of the choices); `width` shrinks the 512s.
- pool4 at stride 1 is a 3x3 max pool with padding 1 (the paper gives only the stride).
- Classes: the paper proposes class-agnostic segments. With num_classes <= 2 (background and
  one class) so does this model, and every instance is class 1. With more classes a 1x1 semantic
  head on the features is trained by cross-entropy on target[1], and each instance takes the
  foreground class with the most pixels inside its mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models.backbones import BACKBONES, RESNET_DEPTHS, VGG16, build_backbone
from fcnseg.models.base import pad_to_multiple
from fcnseg.models.instances.contract import Instances
from fcnseg.models.instances.proposals import detect
from fcnseg.models.instances.windows import (
    SampledWindows,
    assemble,
    crop_windows,
    sample_windows,
    window_tops,
)

STRIDE = 8  # the paper's output stride: the score maps' resolution
# Nuclei (boxes 8-60 px) and generated shapes (24-180 px): each size is positive for objects of
# 0.4 L up to about L (windows.py); consecutive sizes 1.5-1.7x apart overlap, so every object from
# 6.4 to ~200 px fits one or two sizes.
WINDOW_SIZES = (16, 24, 40, 64, 96, 144, 224)


class DilatedVGG16(nn.Module):
    """VGG-16 at output stride 8, as in the paper: pool4 at stride 1, conv5 dilated by 2."""

    def __init__(self, vgg: VGG16) -> None:
        super().__init__()
        self.vgg = vgg
        for layer in vgg.stages[4]:  # conv5_1..3: padding follows dilation, sizes are kept
            layer[0].dilation, layer[0].padding = (2, 2), (2, 2)
        self.channels = {STRIDE: vgg.channels[16]}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        for stage in self.vgg.stages[:3]:
            x = F.max_pool2d(stage(x), kernel_size=2)  # (N, C_s, H/s, W/s), s = 2, 4, 8
        x = F.max_pool2d(self.vgg.stages[3](x), kernel_size=3, stride=1, padding=1)  # pool4
        return {STRIDE: self.vgg.stages[4](x)}  # (N, 512, H/8, W/8)


def stride8_backbone(name: str, in_channels: int, weights: str | None) -> nn.Module:
    """A backbone whose deepest features, `backbone(x)[8]`, are at output stride 8."""
    if name in RESNET_DEPTHS:
        return build_backbone(name, in_channels, STRIDE, weights, BACKBONES)
    return DilatedVGG16(build_backbone(name, in_channels, 32, weights, BACKBONES))


class InstanceFCN(nn.Module):
    """The network, its training loss (`loss`) and its inference (`predict`, `postprocess`).

    forward returns raw maps at stride 8 of the padded input: {"scores": (N, k*k, h, w),
    "objectness": (N, S, h, w)} and, with more than one foreground class, "semantic" (N, K, h, w).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        backbone: str,
        backbone_weights: str | None,
        grid_size: int,
        width: int,
        window_sizes: tuple[int, ...],
        windows_per_image: int,
        score_threshold: float,
        nms_threshold: float,
        max_detections: int,
    ) -> None:
        super().__init__()
        self.backbone = stride8_backbone(backbone, in_channels, backbone_weights)
        channels = self.backbone.channels[STRIDE]
        self.score_branch = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, grid_size * grid_size, kernel_size=3, padding=1),
        )
        self.objectness_branch = nn.Sequential(
            nn.Conv2d(channels, width, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, len(window_sizes), kernel_size=1),
        )
        self.semantic_head = nn.Conv2d(channels, num_classes, 1) if num_classes > 2 else None
        for head in (self.score_branch, self.objectness_branch):
            nn.init.kaiming_normal_(head[0].weight, mode="fan_out", nonlinearity="relu")
            nn.init.normal_(head[2].weight, std=0.01)  # small outputs: probabilities start at 1/2
            nn.init.zeros_(head[0].bias)
            nn.init.zeros_(head[2].bias)
        self.window_sizes = window_sizes
        self.windows_per_image = windows_per_image
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = pad_to_multiple(x, STRIDE)  # (N, C_in, H', W')
        features = self.backbone(x)[STRIDE]  # (N, C, H'/8, W'/8)
        outputs = {
            "scores": self.score_branch(features),  # (N, k*k, H'/8, W'/8)
            "objectness": self.objectness_branch(features),  # (N, S, H'/8, W'/8)
        }
        if self.semantic_head is not None:
            outputs["semantic"] = self.semantic_head(features)  # (N, K, H'/8, W'/8)
        return outputs

    def loss(
        self, outputs: dict[str, torch.Tensor], target: torch.Tensor, ignore_index: int = 255
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, {term: value}) for a batch's (N, 2, H, W) targets (see instances.py)."""
        scores, objectness = outputs["scores"], outputs["objectness"]
        windows = sample_windows(
            target[:, 0], self.window_sizes, STRIDE, scores.shape[-2:], self.windows_per_image
        )
        logits = objectness[windows.images, windows.sizes, windows.rows, windows.cols]  # (W,)
        parts = {
            "objectness": F.binary_cross_entropy_with_logits(
                logits, windows.positive.float(), reduction="sum"
            )
            / max(len(logits), 1),
            "mask": self.mask_loss(scores, target, windows, ignore_index),
        }
        if "semantic" in outputs:
            parts["semantic"] = semantic_loss(outputs["semantic"], target[:, 1], ignore_index)
        total = torch.stack(list(parts.values())).sum()
        return total, {name: value.detach() for name, value in parts.items()}

    def mask_loss(
        self,
        scores: torch.Tensor,
        target: torch.Tensor,
        windows: SampledWindows,
        ignore_index: int,
    ) -> torch.Tensor:
        """Per-pixel logistic loss of the positive windows' masks: the window's instance is 1,
        everything else (other instances too) 0; void pixels and pixels outside the image
        are ignored. A mean over those labelled pixels."""
        total = scores.sum() * 0  # a zero that keeps the graph whole when nothing is positive
        count = 0
        for index, size in enumerate(self.window_sizes):
            chosen = torch.nonzero(windows.positive & (windows.sizes == index)).flatten()
            if len(chosen) == 0:
                continue
            cells = size // STRIDE
            images, rows, cols = windows.images[chosen], windows.rows[chosen], windows.cols[chosen]
            logits = assemble(scores, images, rows, cols, cells)  # (P, m, m)
            logits = F.interpolate(
                logits[:, None], size=(size, size), mode="bilinear", align_corners=False
            )[:, 0]  # (P, L, L)
            tops, lefts = window_tops(rows, cells, STRIDE), window_tops(cols, cells, STRIDE)
            ids, inside = crop_windows(target[:, 0], images, tops, lefts, size)  # (P, L, L)
            classes, _ = crop_windows(target[:, 1], images, tops, lefts, size)
            truth = (ids == windows.instances[chosen][:, None, None]).to(logits.dtype)
            losses = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
            labelled = inside & (classes != ignore_index)
            total = total + losses[labelled].sum()
            count += int(labelled.sum())
        return total / max(count, 1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[Instances]:
        """The instances found in each of (N, C, H, W) images, at (H, W). Call eval() first."""
        return self.postprocess(self(images), (images.shape[-2], images.shape[-1]))

    @torch.no_grad()
    def postprocess(
        self, outputs: dict[str, torch.Tensor], image_size: tuple[int, int]
    ) -> list[Instances]:
        """forward's raw maps -> the instances of each image, on the CPU."""
        found = []
        for index in range(len(outputs["scores"])):
            masks, scores = detect(
                outputs["scores"][index],
                outputs["objectness"][index],
                self.window_sizes,
                STRIDE,
                image_size,
                self.score_threshold,
                self.nms_threshold,
                self.max_detections,
            )
            if "semantic" in outputs:
                classes = vote_classes(masks, outputs["semantic"][index], image_size)
            else:
                classes = torch.ones(len(masks), dtype=torch.int64, device=masks.device)
            found.append(Instances(masks.cpu(), classes.cpu(), scores.float().cpu()))
        return found


def upsample_to_image(logits: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(N, K, h, w) stride-8 logits -> (N, K, H, W): to the padded size, then cropped."""
    padded = (logits.shape[-2] * STRIDE, logits.shape[-1] * STRIDE)
    logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    return logits[..., : image_size[0], : image_size[1]]


def semantic_loss(logits: torch.Tensor, classes: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Cross-entropy of the semantic head over labelled pixels (0 when there are none)."""
    logits = upsample_to_image(logits, (classes.shape[-2], classes.shape[-1]))  # (N, K, H, W)
    total = F.cross_entropy(logits, classes, ignore_index=ignore_index, reduction="sum")
    return total / max(int((classes != ignore_index).sum()), 1)


def vote_classes(
    masks: torch.Tensor, semantic: torch.Tensor, image_size: tuple[int, int]
) -> torch.Tensor:
    """(M,) the foreground class most of each (M, H, W) mask's pixels take from (K, h, w)
    semantic logits: background is never chosen, the mask says there is an object."""
    logits = upsample_to_image(semantic[None], image_size)[0]  # (K, H, W)
    labels = logits[1:].argmax(0) + 1  # (H, W), the most likely foreground class
    one_hot = F.one_hot(labels.flatten(), len(logits)).to(logits.dtype)  # (H*W, K)
    votes = masks.flatten(1).to(logits.dtype) @ one_hot  # (M, K)
    return votes.argmax(1)


def refuse_impossible_options(
    grid_size: int,
    width: int,
    window_sizes: tuple[int, ...],
    windows_per_image: int,
    thresholds: tuple[float, float],
    max_detections: int,
) -> None:
    """Impossible option values, refused with the reason before anything is built."""
    problems = []
    if grid_size < 1 or width < 1:
        problems.append(f"grid_size and width must be >= 1, got {grid_size} and {width}")
    if not window_sizes or any(size < STRIDE or size % STRIDE for size in window_sizes):
        problems.append(f"window_sizes must be multiples of {STRIDE}, got {list(window_sizes)}")
    if windows_per_image < 8:
        problems.append(f"windows_per_image must be >= 8, got {windows_per_image}")
    if not all(0.0 <= threshold <= 1.0 for threshold in thresholds):
        problems.append(f"score_threshold and nms_threshold must be in [0, 1], got {thresholds}")
    if max_detections < 1:
        problems.append(f"max_detections must be >= 1, got {max_detections}")
    if problems:
        raise FcnsegError("instancefcn: " + "; ".join(problems) + ".")


def instancefcn(
    num_classes: int,
    in_channels: int = 3,
    backbone: str = "resnet18",
    backbone_weights: str | None = None,
    grid_size: int = 5,
    width: int = 512,
    window_sizes: Sequence[int] = WINDOW_SIZES,
    windows_per_image: int = 256,
    score_threshold: float = 0.5,
    nms_threshold: float = 0.5,
    max_detections: int = 300,
) -> InstanceFCN:
    """InstanceFCN; `grid_size` is the paper's k, `window_sizes` are in pixels (multiples of 8)."""
    window_sizes = tuple(sorted(set(window_sizes)))
    thresholds = (score_threshold, nms_threshold)
    refuse_impossible_options(
        grid_size, width, window_sizes, windows_per_image, thresholds, max_detections
    )
    return InstanceFCN(
        num_classes=num_classes,
        in_channels=in_channels,
        backbone=backbone,
        backbone_weights=backbone_weights,
        grid_size=grid_size,
        width=width,
        window_sizes=window_sizes,
        windows_per_image=windows_per_image,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        max_detections=max_detections,
    )
