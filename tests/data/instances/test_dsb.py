"""The DSB 2018 nuclei (../shared/data): 16-bit instance maps read without truncation."""

from __future__ import annotations

import numpy as np
import pytest

from fcnseg.config import DataConfig
from fcnseg.data.instances.folder import InstanceFolder
from tests.conftest import SHARED_DATA

DSB = SHARED_DATA / "dsb2018_nuclei"


@pytest.mark.skipif(not DSB.is_dir(), reason=f"the DSB 2018 nuclei are not at {DSB}")
def test_two_train_maps_read_as_contiguous_16_bit_ids():
    data = InstanceFolder(DataConfig(kind="folder", root=str(DSB), num_classes=2), "train")
    assert len(data) == 464 and data.class_names == ["background", "object"]
    for index in range(2):
        stored = data.read_ids(index)
        assert stored.dtype == np.uint16  # read as written, not cut to 8 bits
        image, target = data.load(index)
        count = int(target[0].max())
        assert count > 0 and set(np.unique(target[0]).tolist()) == set(range(count + 1))
        assert np.array_equal(target[0], stored.astype(np.int64))
        assert np.array_equal(target[1], (stored > 0).astype(np.int64))  # one class, no void
        assert image.shape == (*stored.shape, 3) and image.dtype == np.uint8
