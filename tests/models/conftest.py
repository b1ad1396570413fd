"""Model tests: one thread each (fast and steady on a shared 2-core machine), and models cached.

Building a model is a large part of a test's cost (FCN's fc6 alone has 103 M weights), so tests
that only need a model in eval mode share one per (name, in_channels, num_classes).
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from torch import nn

from fcnseg.models import build_model


@pytest.fixture(autouse=True)
def one_thread_and_fixed_seed():
    # With other processes busy, two OpenMP threads on two cores wait on each other at every
    # operation: ten times slower than one thread. Restored afterwards for the other tests.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@lru_cache(maxsize=1)  # FCN takes 0.5 GB: one at a time
def cached_model(name: str, in_channels: int = 3, num_classes: int = 21) -> nn.Module:
    """A shared model in eval mode: use it under torch.no_grad() and do not change it."""
    torch.manual_seed(0)
    return build_model(name, num_classes, in_channels).eval()
