"""The semantic model contract, checked for every registered semantic model (a new model is
covered the day it lands): logits at the input's size for odd sizes, any in_channels /
num_classes, finite values, gradients to every parameter, and eval-mode outputs that do not depend
on the rest of the batch. Instance models have their own contract: instances/test_instancefcn.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

import fcnseg
from fcnseg.models import build_model

from .conftest import cached_model

# The full camera size, for a few models only: it is the slowest case and adds little per model.
LARGE_SIZE_MODELS = ("fcn8s", "deeplabv3plus", "linknet")


@pytest.fixture(scope="module", params=fcnseg.list_models(task="semantic"))
def name(request: pytest.FixtureRequest) -> str:
    """Every registered semantic model. Module scope makes pytest run each model's tests
    together, so that its cached instance is built once."""
    return request.param


@pytest.mark.parametrize("size", [(97, 131), (181, 243)])
def test_logits_have_the_input_size(name: str, size: tuple[int, int]) -> None:
    with torch.no_grad():
        logits = cached_model(name)(torch.randn(1, 3, *size))
    assert logits.shape == (1, 21, *size)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", LARGE_SIZE_MODELS)
def test_logits_at_360x480(name: str) -> None:
    with torch.inference_mode():
        logits = cached_model(name)(torch.randn(1, 3, 360, 480))
    assert logits.shape == (1, 21, 360, 480)
    assert torch.isfinite(logits).all()


# Each in_channels and each num_classes of the spec at least once, without all nine pairs.
@pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 1), (3, 2), (4, 21)])
def test_in_channels_and_num_classes(name: str, in_channels: int, num_classes: int) -> None:
    with torch.no_grad():
        logits = cached_model(name, in_channels, num_classes)(torch.randn(2, in_channels, 45, 61))
    assert logits.shape == (2, num_classes, 45, 61)
    assert torch.isfinite(logits).all()


def test_gradients_reach_every_parameter(name: str) -> None:
    model = build_model(name, num_classes=3).train()
    logits = model(torch.randn(2, 3, 45, 61))
    # A random weighting, so that no gradient vanishes by symmetry (as a plain sum would at a
    # softmax, for instance).
    loss = (logits * torch.randn_like(logits)).sum()
    names, parameters = zip(*model.named_parameters(), strict=True)
    gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
    unreached = [n for n, g in zip(names, gradients, strict=True) if g is None]
    assert not unreached, f"no gradient reaches {unreached}"
    assert all(torch.isfinite(g).all() for g in gradients)


@contextmanager
def zero_parameters_randomised(model: torch.nn.Module) -> Iterator[None]:
    """Give every all-zero parameter random values for a while, then zero it again.

    A fresh FCN's score layers are zero, and so are its logits: any batch would give the same.
    """
    zero = [p for p in model.parameters() if not p.any()]
    with torch.no_grad():
        for parameter in zero:
            parameter.normal_(std=0.01)
    try:
        yield
    finally:
        with torch.no_grad():
            for parameter in zero:
                parameter.zero_()


def test_eval_output_does_not_depend_on_the_batch(name: str) -> None:
    model = cached_model(name)
    images = torch.randn(3, 3, 45, 61)
    with torch.no_grad(), zero_parameters_randomised(model):
        together = model(images)
        alone = torch.cat([model(image[None]) for image in images])
    scale = together.abs().max()
    assert together.std() > 0  # else no batch effect could show
    torch.testing.assert_close(together, alone, atol=1e-5 * scale, rtol=1e-4)


def test_unknown_option_is_an_error_listing_the_options(name: str) -> None:
    with pytest.raises(fcnseg.FcnsegError, match="Its options: "):
        build_model(name, num_classes=2, no_such_option=1)
