"""Mean-field inference of a fully connected (dense) CRF in plain PyTorch, and its trainable form.

The CRF of Krähenbühl and Koltun (NeurIPS 2011) over the labels x_i of all pixels i:

    E(x) = sum_i U_i(x_i) + sum_{i<j} mu(x_i, x_j) k(i, j)
    U_i(l)  = -log P_i(l)                       the network's log-probabilities
    k(i, j) = w1 exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)  appearance
            + w2 exp(-|p_i - p_j|^2 / 2 theta_gamma^2)                                  smoothness
    mu      = Potts (1 where the two labels differ, else 0), or a learned (K, K) matrix

p are pixel positions, I colours on 0..255. Mean field updates Q, a per-pixel factorisation of P:

    logits                                        # (N, K, H, W)
    Q = softmax(logits)                           # (N, K, H, W)
    repeat `iterations` times:
        appearance = sum_{j != i} k_a(i, j) Q_j   # (N, K, H, W)  windowed, colour-aware
        smoothness = sum_{j != i} k_s(i, j) Q_j   # (N, K, H, W)  separable Gaussian blur
        pairwise = w1 appearance + w2 smoothness  # (N, K, H, W)
        penalty_l = sum_l' mu(l, l') pairwise_l'  # (N, K, H, W)  compatibility transform
        scores = logits - penalty                 # (N, K, H, W)
        Q = softmax(scores)
    -> log Q = log_softmax(scores)                # (N, K, H, W)

Where this differs from the exact dense CRF (to stay plain PyTorch with bounded memory, in the
manner of ConvCRF, Teichmann and Cipolla 2018):
- The appearance kernel is summed over `window` x `window` samples `dilation` pixels apart around
  each pixel, not over the whole image: it is taken as 0 beyond them. With dilation d > 1 each
  sample stands for the d x d pixels around it, so its term is scaled by d^2 (a sparse estimate
  of the dense sum, which keeps w1's meaning); with d = 1 the window's sum is exact.
- The smoothness kernel is cut at 3 theta_gamma along each axis (1.1% of its peak).
- pydensecrf's filtering (permutohedral lattice) is itself approximate; with NO_NORMALIZATION it
  is the reference this is compared with in benchmarks/crf_reference.py.

CRF-as-RNN (Zheng et al., ICCV 2015) unrolls the same updates as layers of the network and learns
the kernel weights and the compatibility with it: `CRFasRNN`, and `WithCRF`, which puts one at the
end of any semantic model (the `crf` option of build_model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch
from torch import nn

from fcnseg.config import CRFParameters, scored_classes
from fcnseg.errors import FcnsegError
from fcnseg.registry import check_options

# The appearance kernels of a batch, kept across iterations when they take at most this; above,
# each is recomputed when used (iterations x the exponentials, one (N, 1, H, W) map at a time).
KERNEL_BUDGET_BYTES = 256 * 2**20
# The trainable CRF's starting kernel weights (its messages are normalised, see CRFasRNN).
TRAINABLE_WEIGHTS = {"appearance_weight": 1.0, "smoothness_weight": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Offset = tuple[int, int]
Region = tuple[slice, slice]  # rows, columns


def dense_crf(
    logits: torch.Tensor,
    image: torch.Tensor,
    parameters: CRFParameters | None = None,
    compatibility: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, K, H, W) logits and an (N, 3, H, W) image on 0..255 -> (N, K, H, W) log Q, the CRF's
    log-probabilities after `parameters.iterations` mean-field updates (see the module docstring).

    `compatibility` is mu, (K, K); Potts when None. A one-output (sigmoid) model's logit l is
    read as the two classes (0, l) and the refined logit log(q1 / q0) comes back, (N, 1, H, W).
    """
    parameters = parameters or CRFParameters()
    weights = (parameters.appearance_weight, parameters.smoothness_weight)
    return mean_field(logits, image, parameters, logits.new_tensor(weights), compatibility)


def mean_field(
    logits: torch.Tensor,
    image: torch.Tensor,
    parameters: CRFParameters,
    weights: torch.Tensor,
    compatibility: torch.Tensor | None = None,
    normalize: bool = False,
) -> torch.Tensor:
    """dense_crf with the kernel weights (w1, w2) as a (2,) tensor: differentiable in the logits,
    the weights and the compatibility (CRFasRNN learns the last two).

    `normalize` divides each kernel's messages by the kernel's total weight at the pixel (its
    messages for Q = 1), so that they are a weighted mean of the neighbours' Q, on 0..1, as in
    CRF-as-RNN's filtering: w1 and w2 are then at most the change they make to a logit.
    """
    _check_shapes(logits, image, compatibility)
    binary = logits.shape[1] == 1
    if binary:  # sigmoid(l) = softmax((0, l))[1]
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    appearance_filter = AppearanceFilter(image.to(logits.dtype), parameters)
    sigma = parameters.smoothness_sigma
    appearance_scale, smoothness_scale = 1.0, 1.0
    if normalize:  # 1 / the kernels' sums, (N, 1, H, W); a lone pixel (sum 0) hears nothing
        ones = logits.new_ones((logits.shape[0], 1, *logits.shape[2:]))
        appearance_scale = 1 / appearance_filter(ones).clamp(min=1e-6)
        smoothness_scale = 1 / smoothness_messages(ones, sigma).clamp(min=1e-6)
    scores = logits
    for _ in range(parameters.iterations):
        probabilities = scores.softmax(dim=1)  # (N, K, H, W)
        appearance = appearance_filter(probabilities) * appearance_scale
        smoothness = smoothness_messages(probabilities, sigma) * smoothness_scale
        pairwise = weights[0] * appearance + weights[1] * smoothness
        scores = logits - compatibility_transform(pairwise, compatibility)
    log_q = scores.log_softmax(dim=1)
    return log_q[:, 1:] - log_q[:, :1] if binary else log_q


def compatibility_transform(
    pairwise: torch.Tensor, compatibility: torch.Tensor | None = None
) -> torch.Tensor:
    """(N, K, H, W) -> penalty_l = sum_l' mu(l, l') pairwise_l'; Potts (mu = 1 - identity) when
    `compatibility` is None, which is the sum over the other classes."""
    if compatibility is None:
        return pairwise.sum(dim=1, keepdim=True) - pairwise
    return torch.einsum("kl,nlhw->nkhw", compatibility, pairwise)


def smoothness_messages(probabilities: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, K, H, W) Q -> sum_{j != i} exp(-|p_i - p_j|^2 / 2 sigma^2) Q_j, (N, K, H, W).

    The kernel is g(dy) g(dx), one 1-D Gaussian per axis, so it is a blur along the rows and
    then along the columns (each cut at 3 sigma); then the pixel's own Q (weight 1) is taken
    away. Shifted adds rather than conv2d: ten times faster here for single-channel taps.
    """
    blurred = probabilities
    for dimension in (2, 3):
        blurred = _blur_along(blurred, dimension, sigma)
    return blurred - probabilities


def _blur_along(values: torch.Tensor, dimension: int, sigma: float) -> torch.Tensor:
    """sum_t exp(-t^2 / 2 sigma^2) values shifted by t along `dimension`, |t| <= 3 sigma; what
    a shift brings in from outside the image is 0."""
    size = values.shape[dimension]
    result = values.clone()
    for shift in range(1, min(math.ceil(3 * sigma), size - 1) + 1):
        weight = math.exp(-(shift**2) / (2 * sigma**2))
        kept = size - shift
        result.narrow(dimension, shift, kept).add_(values.narrow(dimension, 0, kept), alpha=weight)
        result.narrow(dimension, 0, kept).add_(values.narrow(dimension, shift, kept), alpha=weight)
    return result


def pair_offsets(window: int, dilation: int, height: int, width: int) -> list[Offset]:
    """The window's offsets (dy, dx) with dy > 0, or dy == 0 < dx: half of them, as each one
    serves the pixel pairs in both directions. Offsets that reach past the image are left out."""
    steps = range(-(window // 2), window // 2 + 1)
    offsets = [(dy * dilation, dx * dilation) for dy in steps for dx in steps if (dy, dx) > (0, 0)]
    return [(dy, dx) for dy, dx in offsets if dy < height and abs(dx) < width]


def pair_regions(offset: Offset) -> tuple[Region, Region]:
    """Where the first pixels a and the second pixels a + (dy, dx) of the pairs lie (dy >= 0)."""
    dy, dx = offset
    first_rows, second_rows = slice(0, -dy or None), slice(dy, None)
    if dx >= 0:
        return (first_rows, slice(0, -dx or None)), (second_rows, slice(dx, None))
    return (first_rows, slice(-dx, None)), (second_rows, slice(0, dx))


def pair_kernel(image: torch.Tensor, offset: Offset, parameters: CRFParameters) -> torch.Tensor:
    """(N, C, H, W) image -> (N, 1, H - dy, W - |dx|): the appearance kernel of each pixel pair
    (a, a + offset), times dilation^2 (each sample stands for dilation^2 pixels)."""
    (first_rows, first_columns), (second_rows, second_columns) = pair_regions(offset)
    difference = image[..., first_rows, first_columns] - image[..., second_rows, second_columns]
    colour = difference.square().sum(dim=1, keepdim=True)  # |I_a - I_(a + offset)|^2
    distance = offset[0] ** 2 + offset[1] ** 2  # |p_a - p_(a + offset)|^2
    alpha, beta = parameters.appearance_position_sigma, parameters.appearance_colour_sigma
    scale = parameters.dilation**2 * math.exp(-distance / (2 * alpha**2))
    return scale * torch.exp(-colour / (2 * beta**2))


class AppearanceFilter:
    """The windowed appearance messages over one batch of images: Q -> sum_j k_a(i, j) Q_j.

    Memory: the kernels of all (window^2 - 1) / 2 offsets are kept, N x H x W numbers each
    (60 maps with an 11-sample window: 41 MB at 360x480, 166 MB at 720x960), when they fit
    KERNEL_BUDGET_BYTES; else they are recomputed at each iteration. Beside them live a few
    (N, K, H, W) tensors: Q, the messages, the scores (under autograd, every iteration's). The
    loop over offsets adds in place and never holds the window's unfolded neighbourhood
    (N, K, window^2, H, W), which at 360x480 with 11 classes would take 0.9 GB.
    """

    def __init__(self, image: torch.Tensor, parameters: CRFParameters) -> None:
        count, _, height, width = image.shape
        self.image, self.parameters = image, parameters
        self.offsets = pair_offsets(parameters.window, parameters.dilation, height, width)
        size = len(self.offsets) * count * height * width * image.element_size()
        self.kernels = (
            [self.kernel(o) for o in self.offsets] if size <= KERNEL_BUDGET_BYTES else None
        )

    def kernel(self, offset: Offset) -> torch.Tensor:
        return pair_kernel(self.image, offset, self.parameters)

    def __call__(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(N, K, H, W) Q -> (N, K, H, W) appearance messages (the pixel itself excluded)."""
        messages = torch.zeros_like(probabilities)
        kernels: Iterable[torch.Tensor] = self.kernels or map(self.kernel, self.offsets)
        for offset, kernel in zip(self.offsets, kernels, strict=True):
            (first_rows, first_columns), (second_rows, second_columns) = pair_regions(offset)
            first = probabilities[..., first_rows, first_columns]
            second = probabilities[..., second_rows, second_columns]
            messages[..., first_rows, first_columns].addcmul_(kernel, second)  # a hears a + o
            messages[..., second_rows, second_columns].addcmul_(kernel, first)  # a + o hears a
        return messages


def _check_shapes(
    logits: torch.Tensor, image: torch.Tensor, compatibility: torch.Tensor | None
) -> None:
    same = logits.shape[:1] + logits.shape[2:] == image.shape[:1] + image.shape[2:]
    if logits.dim() != 4 or image.dim() != 4 or not same:
        raise ValueError(
            "the dense CRF takes logits (N, K, H, W) and an image (N, C, H, W) of the same N, "
            f"H and W; got {tuple(logits.shape)} and {tuple(image.shape)}"
        )
    classes = scored_classes(logits.shape[1])
    if compatibility is not None and compatibility.shape != (classes, classes):
        raise ValueError(
            f"the compatibility is ({classes}, {classes}) for {logits.shape[1]} logits, "
            f"got {tuple(compatibility.shape)}"
        )


class CRFasRNN(nn.Module):
    """The mean-field CRF as layers (Zheng et al. 2015): (N, K, H, W) logits and an (N, 3, H, W)
    image on 0..255 -> (N, K, H, W) log Q, unrolled `parameters.iterations` times.

    Learned: the two kernel weights, as logarithms so that they stay positive (started from
    parameters' w1 and w2), and the (K, K) compatibility, started from Potts. The kernel widths
    stay fixed: they shape the filter, as in the paper. The messages are normalised (see
    mean_field): unnormalised, the default window's messages start hundreds of times larger
    than a fresh network's logits, and training spends itself shrinking them (measured on ISBI:
    membrane Dice 55.9 against 80.6 without the CRF). Normalised, w1 = 10 moves a logit by at
    most 10, and TRAINABLE_WEIGHTS (1, 1) starts the layer gentle.
    """

    def __init__(self, num_classes: int, parameters: CRFParameters | None = None) -> None:
        super().__init__()
        self.settings = parameters or CRFParameters(**TRAINABLE_WEIGHTS)
        classes = scored_classes(num_classes)  # a one-output model's CRF has two classes
        weights = torch.tensor([self.settings.appearance_weight, self.settings.smoothness_weight])
        # A weight of 0 would be log 0 = -inf, which weight decay turns into NaN: start it tiny.
        self.log_weights = nn.Parameter(weights.clamp(min=1e-4).log())
        self.compatibility = nn.Parameter(1 - torch.eye(classes))

    def forward(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        weights = self.log_weights.exp()
        return mean_field(logits, image, self.settings, weights, self.compatibility, normalize=True)


class WithCRF(nn.Module):
    """A semantic model followed by a trainable CRF: (N, C, H, W) normalised images -> (N, K, H,
    W) scores (the CRF's log Q), at the input's size like every fcnseg model. The appearance
    kernel sees the input de-normalised with the data's `mean` and `std`, on 0..255."""

    def __init__(
        self,
        model: nn.Module,
        crf: CRFasRNN,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.model, self.crf = model, crf
        # Not saved in the state dict: they come from the model's spec, like its architecture.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @property
    def size_divisor(self) -> int:
        """The wrapped model's deepest stride (the Predictor's tiles are at least this)."""
        return getattr(self.model, "size_divisor", 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.crf(self.model(images), colour_image(images, self.mean, self.std))


def colour_image(
    images: torch.Tensor, mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """Normalised (N, C, H, W) network input -> (N, 3, H, W) colours on 0..255 for the appearance
    kernel: (x std + mean) 255. Grey (C < 3: the first channel) is repeated into R, G and B, as a
    grey photograph stored as RGB would be; a fourth (alpha) channel is dropped."""
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    if mean.shape[1] != images.shape[1] or std.shape[1] != images.shape[1]:
        raise FcnsegError(
            f"the images have {images.shape[1]} channels but the normalisation has "
            f"{mean.shape[1]} means and {std.shape[1]} standard deviations; give one per channel "
            "(data.mean, data.std)."
        )
    colours = (images * std + mean) * 255
    return colours[:, :1].expand(-1, 3, -1, -1) if colours.shape[1] < 3 else colours[:, :3]


def with_crf(model: nn.Module, num_classes: int, in_channels: int, option: Any) -> WithCRF:
    """The `crf` model option: true (the defaults) or a mapping of CRFParameters fields, plus
    `mean` and `std`, the data's normalisation (ImageNet's unless given) -> model + CRFasRNN."""
    if option is True:
        option = {}
    if not isinstance(option, Mapping):
        raise FcnsegError(
            f"model option 'crf' is {option!r}; accepted: true (the defaults), or a mapping of "
            "CRF settings such as {iterations: 5, appearance_weight: 5}."
        )
    settings = dict(option)
    accepted = [field.name for field in fields(CRFParameters)] + ["mean", "std"]
    check_options(settings, accepted, "model option 'crf'")
    mean, std = settings.pop("mean", IMAGENET_MEAN), settings.pop("std", IMAGENET_STD)
    if len(mean) != in_channels or len(std) != in_channels:
        raise FcnsegError(
            f"model option 'crf' has mean {list(mean)} and std {list(std)} for a model of "
            f"{in_channels} input channel(s); give the data's, one per channel, e.g. "
            "crf: {mean: [0.5], std: [0.25]} for greyscale images."
        )
    parameters = CRFParameters(**(TRAINABLE_WEIGHTS | settings))
    return WithCRF(model, CRFasRNN(num_classes, parameters), mean, std)
