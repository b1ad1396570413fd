"""FCIS (Li, Qi, Dai, Ji, Wei, "Fully Convolutional Instance-aware Semantic Segmentation", CVPR
2017): position-sensitive inside/outside score maps, assembled per region of interest, give each
ROI's mask and its class jointly. Training targets and losses: fcis_targets.py.

    x (N, C_in, H, W) -> pad bottom/right to a multiple of s (16, or 8)    (N, C_in, H', W')
      -> ResNet conv1..conv4                                              (N, C4, H'/s, W'/s)
         -> RPN: 3x3 conv (512), ReLU -> 1x1 objectness, 1x1 deltas       (N, A | 4A, h, w)
      -> conv5, dilated (stride s kept)                                   (N, C5, h, w)
      -> 1x1 conv (1024), ReLU -> 1x1 inside/outside maps                 (N, 2 k^2 K, h, w)
                               -> 1x1 box maps                            (N, 4 k^2, h, w)
    forward stops here: every map above is raw, so the network exports to ONNX whole. Then,
    parameter-free (psroi.py, rpn.py):
    ROIs (R, 4) -> position-sensitive pooling to P x P bins               (R, K, 2, P, P)
      mask of class c: softmax(inside, outside) per bin = sigmoid(in - out)   (R, K, P, P)
      class: max(inside, outside) per bin, averaged over the bins, softmax    (R, K)
      box: the box maps pooled the same way and averaged                      (R, 4) deltas
    training:  RPN losses on sampled anchors; ROIs = proposals + true boxes, positive at box
               IoU >= 0.5; per-ROI losses ranked, the hardest `hard_rois` per image kept (OHEM);
               class, mask (positives only) and box losses weighted 1 : 10 : 1
    inference: proposals -> scored, boxes refined -> scored again (both sets kept) -> per class
               score threshold and box NMS -> mask voting -> masks at the input's own size

K = num_classes (background included; 1 means one foreground class, as 2), k = grid_size (7),
P = mask_size (21), A = anchors per cell (anchor_sizes x anchor_ratios).

Faithful (paper and msracver/FCIS): ResNet with conv5 dilated to output stride 16, the RPN on
conv4 (3x3 512, anchors of several sizes and ratios 0.5, 1, 2, anchor IoU 0.7 / 0.3, 256 anchors
an image, half positive, NMS 0.7 over the best 6000, smooth L1 with sigma 3), the 1x1 conv to
1024, 2 k^2 K maps and 4 k^2 class-agnostic box maps, k = 7, P = 21, the joint formulation, ROI
box IoU 0.5 for positives, true boxes added as ROIs, mask targets at 0.4, OHEM on class + 10
mask + box loss, the losses normalised as the reference (class: mean over kept ROIs; mask: sum
over pixels of kept positive ROIs / hard_rois; box: smooth L1 sum / hard_rois; box deltas
divided by 0.2, 0.2, 0.5, 0.5), two-pass inference (ROIs and refined ROIs), per-class box NMS
at 0.3, mask voting (masks of ROIs with box IoU >= 0.5, thresholded at 0.4, weighted by score).

Deviations, each for CPU cost, small objects, or this toolkit's conventions:
- Default backbone ResNet-50 (the paper: ResNet-101); any ResNet. `width` (1024) and
  `rpn_width` (512) shrink the heads for CPU; recipes set them.
- Anchors default to 16, 32, 64 and 128 px (the reference: 64-512 px for COCO): nuclei span
  8-60 px, the generated shapes 10-64 px (16-120 px for nuclei seen at twice their size).
- 128 proposals per image in training, 64 kept by OHEM (the reference: 300 and 128): two images'
  ROIs cost about as much to pool as the backbone on small CPU inputs. 300 at inference.
- The RPN scores each anchor with one logit and a logistic loss (the reference: two logits and
  a softmax, the same function); anchors are ignored when their centre lies outside the image
  (the reference ignores every anchor that crosses the border, which on 96 x 128 images leaves
  objects at the edges without anchors).
- Boxes are continuous and half-open, without the reference's "+1" sizes and rounding.
- Void pixels (ignore_index) are left out of the mask loss; a true box's class is the majority
  class under its instance (instances.classes_of).
- Each voter contributes its mask of the class being voted for (the reference: the mask of its
  own best class). score_threshold 0.3 (the reference keeps scores above 1e-3, up to the best
  100: best for AP, but predictions and the DSB score count every mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fcnseg.errors import FcnsegError
from fcnseg.models.backbones import RESNET_DEPTHS, build_backbone
from fcnseg.models.base import pad_to_multiple
from fcnseg.models.instances.contract import Instances
from fcnseg.models.instances.fcis_targets import (
    BOX_STDS,
    FOREGROUND_IOU,
    MASK_THRESHOLD,
    Rois,
    RoiScores,
    Truth,
    mask_targets,
    roi_losses,
    true_instances,
)
from fcnseg.models.instances.psroi import position_sensitive_pool, select_detections, vote_masks
from fcnseg.models.instances.rpn import (
    AnchorSettings,
    box_iou,
    clip_boxes,
    decode_boxes,
    propose,
    rpn_loss,
)
from fcnseg.registry import lookup

RESNETS = tuple(RESNET_DEPTHS)
ANCHOR_SIZES = (16, 32, 64, 128)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
PRE_NMS = 6000  # proposals ranked by objectness before the RPN's NMS (the reference's)
MERGE_IOU = 0.5  # ROIs overlapping a detection by this box IoU vote on its mask


class FCIS(nn.Module):
    """The network, its training loss (`loss`) and its inference (`predict`, `postprocess`).

    forward returns raw maps at stride s of the padded input: {"objectness": (N, A, h, w),
    "anchor_deltas": (N, 4A, h, w), "position_scores": (N, 2 k^2 K, h, w), "position_boxes":
    (N, 4 k^2, h, w)}. Score map ((c * 2 + part) * k + i) * k + j scores class c, part 0
    (outside) or 1 (inside), at grid position (i, j); box map (coordinate * k + i) * k + j.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        backbone: str,
        backbone_weights: str | None,
        anchors: AnchorSettings,
        grid_size: int,
        mask_size: int,
        width: int,
        rpn_width: int,
        rois: tuple[int, int, int],
        score_threshold: float,
        nms_threshold: float,
        max_detections: int,
    ) -> None:
        super().__init__()
        self.backbone = build_backbone(
            backbone, in_channels, anchors.stride, backbone_weights, RESNETS
        )
        conv4 = 256 * RESNET_DEPTHS[backbone][0].expansion
        self.rpn_conv = nn.Conv2d(conv4, rpn_width, kernel_size=3, padding=1)
        self.rpn_objectness = nn.Conv2d(rpn_width, anchors.count, kernel_size=1)
        self.rpn_deltas = nn.Conv2d(rpn_width, 4 * anchors.count, kernel_size=1)
        self.reduce = nn.Conv2d(self.backbone.channels[anchors.stride], width, kernel_size=1)
        cells = grid_size * grid_size
        self.position_scores = nn.Conv2d(width, 2 * cells * num_classes, kernel_size=1)
        self.position_boxes = nn.Conv2d(width, 4 * cells, kernel_size=1)
        new_layers = (self.rpn_conv, self.rpn_objectness, self.rpn_deltas, self.reduce)
        for layer in (*new_layers, self.position_scores, self.position_boxes):
            nn.init.normal_(layer.weight, std=0.01)  # the reference's initialisation
            nn.init.zeros_(layer.bias)
        self.num_classes, self.anchors = num_classes, anchors
        self.grid_size, self.mask_size = grid_size, mask_size
        self.train_rois, self.hard_rois, self.test_rois = rois
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_detections = max_detections

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = pad_to_multiple(x, self.anchors.stride)  # (N, C_in, H', W')
        backbone = self.backbone
        x = F.relu(backbone.bn1(backbone.conv1(x)), inplace=True)  # (N, 64, H'/2, W'/2)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)  # (N, 64, H'/4, W'/4)
        conv4 = backbone.layer3(backbone.layer2(backbone.layer1(x)))  # (N, C4, h, w)
        conv5 = backbone.layer4(conv4)  # (N, C5, h, w): dilated, same size
        rpn = F.relu(self.rpn_conv(conv4))  # (N, 512, h, w)
        shared = F.relu(self.reduce(conv5))  # (N, 1024, h, w)
        return {
            "objectness": self.rpn_objectness(rpn),  # (N, A, h, w)
            "anchor_deltas": self.rpn_deltas(rpn),  # (N, 4A, h, w)
            "position_scores": self.position_scores(shared),  # (N, 2 k^2 K, h, w)
            "position_boxes": self.position_boxes(shared),  # (N, 4 k^2, h, w)
        }

    def score_rois(
        self, outputs: dict[str, torch.Tensor], images: torch.Tensor, boxes: torch.Tensor
    ) -> RoiScores:
        """Assemble the maps in each ROI: the joint mask and class, and the box deltas."""
        stride, grid, size = self.anchors.stride, self.grid_size, self.mask_size
        scores = position_sensitive_pool(
            outputs["position_scores"], images, boxes, stride, grid, size
        ).view(len(boxes), self.num_classes, 2, size, size)  # (R, K, outside | inside, P, P)
        deltas = position_sensitive_pool(
            outputs["position_boxes"], images, boxes, stride, grid, size
        )
        return RoiScores(
            scores.max(2).values.mean((-2, -1)),  # (R, K)
            scores[:, :, 1] - scores[:, :, 0],  # (R, K, P, P): softmax of 2 = sigmoid of this
            deltas.mean((-2, -1)),  # (R, 4)
        )

    def loss(
        self, outputs: dict[str, torch.Tensor], target: torch.Tensor, ignore_index: int = 255
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total, {term: value}) for a batch's (N, 2, H, W) targets (see instances.py)."""
        image_size = (target.shape[-2], target.shape[-1])
        truths = [true_instances(one, ignore_index, self.num_classes) for one in target]
        objectness, boxes = rpn_loss(
            outputs["objectness"],
            outputs["anchor_deltas"],
            [truth.boxes for truth in truths],
            self.anchors,
            image_size,
        )
        rois = self.training_rois(outputs, truths, image_size)
        scores = self.score_rois(outputs, rois.images, rois.boxes)
        masks = mask_targets(target, ignore_index, rois, self.mask_size)
        parts = {"rpn_objectness": objectness, "rpn_box": boxes}
        parts.update(roi_losses(scores, rois, masks, self.hard_rois, len(target)))
        total = torch.stack(list(parts.values())).sum()
        return total, {name: value.detach() for name, value in parts.items()}

    def training_rois(
        self, outputs: dict[str, torch.Tensor], truths: list[Truth], image_size: tuple[int, int]
    ) -> Rois:
        """Each image's proposals and true boxes, labelled by their best box IoU."""
        parts: list[list[torch.Tensor]] = [[], [], [], [], []]
        for image, truth in enumerate(truths):
            proposals, _ = propose(
                outputs["objectness"][image],
                outputs["anchor_deltas"][image],
                self.anchors,
                image_size,
                PRE_NMS,
                self.train_rois,
            )
            boxes = torch.cat([proposals, truth.boxes.to(proposals.dtype)])  # (R_n, 4)
            labels = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
            instances, truth_boxes = torch.zeros_like(labels), boxes
            if len(truth.boxes):
                best, matched = box_iou(boxes, truth.boxes.to(boxes.dtype)).max(1)
                positive = best >= FOREGROUND_IOU
                labels = torch.where(positive, truth.classes[matched], 0)
                instances = torch.where(positive, truth.ids[matched], 0)
                truth_boxes = torch.where(positive[:, None], truth.boxes[matched].to(boxes), boxes)
            values = (torch.full_like(labels, image), boxes, labels, instances, truth_boxes)
            for part, value in zip(parts, values, strict=True):
                part.append(value)
        return Rois(*(torch.cat(part) for part in parts))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[Instances]:
        """The instances found in each of (N, C, H, W) images, at (H, W). Call eval() first."""
        return self.postprocess(self(images), (images.shape[-2], images.shape[-1]))

    @torch.no_grad()
    def postprocess(
        self, outputs: dict[str, torch.Tensor], image_size: tuple[int, int]
    ) -> list[Instances]:
        """forward's raw maps -> the instances of each image. Uses no parameter: runs on a
        model built on the meta device, on an exported network's outputs."""
        found = []
        for index in range(len(outputs["objectness"])):
            single = {name: value[index : index + 1].float() for name, value in outputs.items()}
            found.append(self.detect(single, image_size))
        return found

    def detect(self, outputs: dict[str, torch.Tensor], image_size: tuple[int, int]) -> Instances:
        """One image's maps -> its Instances (see the module docstring)."""
        proposals, _ = propose(
            outputs["objectness"][0],
            outputs["anchor_deltas"][0],
            self.anchors,
            image_size,
            PRE_NMS,
            self.test_rois,
        )
        images = torch.zeros(len(proposals), dtype=torch.int64, device=proposals.device)
        first = self.score_rois(outputs, images, proposals)
        refined = clip_boxes(decode_boxes(proposals, first.box_deltas, BOX_STDS), image_size)
        second = self.score_rois(outputs, images, refined)
        boxes = torch.cat([proposals, refined])  # (2R, 4): both passes vote
        probabilities = torch.cat([first.class_logits, second.class_logits]).softmax(1)
        masks = torch.cat([first.mask_logits, second.mask_logits]).sigmoid()  # (2R, K, P, P)
        chosen, classes, scores = select_detections(
            boxes, probabilities, self.score_threshold, self.nms_threshold, self.max_detections
        )
        voted = vote_masks(
            boxes, probabilities, masks, chosen, classes, image_size, MERGE_IOU, MASK_THRESHOLD
        )  # (M, H, W)
        kept = voted.flatten(1).any(1)
        return Instances(voted[kept].cpu(), classes[kept].cpu(), scores[kept].cpu())


def refuse_impossible_options(
    output_stride: int,
    sizes: tuple[int, int, int, int],
    anchors: tuple[tuple[float, ...], tuple[float, ...]],
    rois: tuple[int, int, int],
    thresholds: tuple[float, float],
) -> None:
    """Impossible option values, refused with the reason before anything is built. `sizes`:
    grid_size, mask_size, width, rpn_width."""
    grid_size, mask_size, width, rpn_width = sizes
    problems = []
    if output_stride not in (8, 16):
        problems.append(f"output_stride must be 16 or 8, got {output_stride}")
    if grid_size < 1 or mask_size < grid_size:
        problems.append(
            f"grid_size must be >= 1 and mask_size >= grid_size, got {grid_size} and {mask_size}"
        )
    if width < 1 or rpn_width < 1:
        problems.append(f"width and rpn_width must be >= 1, got {width} and {rpn_width}")
    if not anchors[0] or not anchors[1] or any(value <= 0 for value in anchors[0] + anchors[1]):
        problems.append(
            f"anchor_sizes and anchor_ratios must be positive and non-empty, got "
            f"{list(anchors[0])} and {list(anchors[1])}"
        )
    if min(rois) < 1:
        problems.append(f"train_rois, hard_rois and test_rois must be >= 1, got {list(rois)}")
    if not all(0.0 <= threshold <= 1.0 for threshold in thresholds):
        problems.append(f"score_threshold and nms_threshold must be in [0, 1], got {thresholds}")
    if problems:
        raise FcnsegError("fcis: " + "; ".join(problems) + ".")


def fcis(
    num_classes: int,
    in_channels: int = 3,
    backbone: str = "resnet50",
    backbone_weights: str | None = None,
    output_stride: int = 16,
    grid_size: int = 7,
    mask_size: int = 21,
    width: int = 1024,
    rpn_width: int = 512,
    anchor_sizes: Sequence[int] = ANCHOR_SIZES,
    anchor_ratios: Sequence[float] = ANCHOR_RATIOS,
    train_rois: int = 128,
    hard_rois: int = 64,
    test_rois: int = 300,
    score_threshold: float = 0.3,
    nms_threshold: float = 0.3,
    max_detections: int = 100,
) -> FCIS:
    """FCIS; `grid_size` is the paper's k, `mask_size` the pooled P, anchors in pixels."""
    lookup(dict.fromkeys(RESNETS), backbone, "backbone")  # before any other complaint
    anchors = (tuple(int(s) for s in anchor_sizes), tuple(float(r) for r in anchor_ratios))
    rois = (train_rois, hard_rois, test_rois)
    sizes = (grid_size, mask_size, width, rpn_width)
    refuse_impossible_options(output_stride, sizes, anchors, rois, (score_threshold, nms_threshold))
    if max_detections < 1:
        raise FcnsegError(f"fcis: max_detections must be >= 1, got {max_detections}.")
    return FCIS(
        num_classes=max(num_classes, 2),  # one output class means one foreground class
        in_channels=in_channels,
        backbone=backbone,
        backbone_weights=backbone_weights,
        anchors=AnchorSettings(*anchors, stride=output_stride),
        grid_size=grid_size,
        mask_size=mask_size,
        width=width,
        rpn_width=rpn_width,
        rois=rois,
        score_threshold=score_threshold,
        nms_threshold=nms_threshold,
        max_detections=max_detections,
    )
