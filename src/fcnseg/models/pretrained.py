"""ImageNet weights for a backbone, from a local file in torchvision's state-dict key layout.

Nothing is downloaded: the user saves torchvision's `vgg16` / `vgg16_bn` / `resnet*` state dict
(or any checkpoint with the same keys) once, and points `backbone_weights` at the file.

Each backbone says how torchvision's names map onto its own (`torchvision_key_map()`) and under
which prefix torchvision keeps the ImageNet classifier (`imagenet_head`, ignored here). Two
reshapes happen on the way:

- a Linear weight loaded into a convolution (VGG's fc6 / fc7) is viewed as (out, C, kh, kw):
  exactly the reshape that `convolutionalize` does;
- an RGB first convolution loaded into a backbone with `in_channels != 3` is adapted: with fewer
  channels each takes the mean RGB filter scaled by 3 / in_channels (a grey image then gives
  the ImageNet response); with more, the first three keep the RGB filters and the extra ones
  start at zero (an RGB + depth image then starts out with the ImageNet response).

Anything else that does not fit is an error listing the missing and unexpected keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fcnseg.errors import FcnsegError

# torchvision's BatchNorm counter: older checkpoints lack it, and its value does not matter.
OPTIONAL_SUFFIX = "num_batches_tracked"


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load torchvision-layout weights from `path` into `backbone`, in place."""
    if not Path(path).is_file():
        raise FcnsegError(f"backbone weights file '{path}' does not exist.")
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise FcnsegError(f"'{path}' holds a {type(loaded).__name__}, not a state dict.")
    own = backbone.state_dict()
    state = rename_torchvision_keys(backbone, loaded, path)
    first_conv = next(key for key, value in own.items() if value.dim() == 4)
    for key, value in state.items():
        if key not in own or value.shape == own[key].shape:
            continue
        if value.dim() == 2 and value.numel() == own[key].numel():  # Linear -> convolution
            state[key] = value.reshape(own[key].shape)
        elif key == first_conv and value.shape[1] == 3:
            state[key] = adapt_rgb_filters(value, own[key].shape[1])
        else:
            raise FcnsegError(
                f"'{path}': '{key}' has shape {tuple(value.shape)}, the backbone expects "
                f"{tuple(own[key].shape)}."
            )
    backbone.load_state_dict(state, strict=False)


def rename_torchvision_keys(
    backbone: nn.Module, loaded: dict[str, torch.Tensor], path: str | Path
) -> dict[str, torch.Tensor]:
    """Rename torchvision keys to ours; the error names every key left over on either side."""
    names = backbone.torchvision_key_map()
    unexpected = [
        key for key in loaded if key not in names and not key.startswith(backbone.imagenet_head)
    ]
    missing = [key for key in names if key not in loaded and not key.endswith(OPTIONAL_SUFFIX)]
    if missing or unexpected:
        raise FcnsegError(
            f"'{path}' does not fit a {type(backbone).__name__} in torchvision's key layout.\n"
            f"  missing keys ({len(missing)}): {shorten(missing)}\n"
            f"  unexpected keys ({len(unexpected)}): {shorten(unexpected)}"
        )
    return {names[key]: value for key, value in loaded.items() if key in names}


def adapt_rgb_filters(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """(out, 3, k, k) RGB filters -> (out, in_channels, k, k), as the module docstring says."""
    if in_channels < 3:
        mean = weight.mean(dim=1, keepdim=True)  # (out, 1, k, k)
        return mean.repeat(1, in_channels, 1, 1) * (3 / in_channels)
    extra = weight.new_zeros(weight.shape[0], in_channels - 3, *weight.shape[2:])
    return torch.cat([weight, extra], dim=1)


def shorten(keys: list[str], limit: int = 12) -> str:
    if not keys:
        return "none"
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, ... ({len(keys) - limit} more)"
