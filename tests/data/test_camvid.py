"""The real CamVid in ../shared/data/camvid: the doctor's account and the packaged recipe.

Skipped, with the reason, where the shared data folder is absent (it is not part of fcnseg).
"""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from fcnseg.commands import resolve_config
from fcnseg.config import DataConfig, load_config
from fcnseg.data import make_dataset
from fcnseg.data.doctor.inspect import check_before_training, inspect_data
from fcnseg.losses import median_frequency_weights
from tests.conftest import SHARED_DATA

CAMVID = SHARED_DATA / "camvid"
pytestmark = pytest.mark.skipif(
    not CAMVID.is_dir(), reason=f"real data not here: {CAMVID} is missing (see shared/data)"
)

# ../shared/data/README.md: train pixels per class 0..11 in millions, 11 being void.
README_TRAIN_MILLIONS = [10.68, 14.75, 0.62, 20.08, 2.85, 6.17, 0.74, 0.71, 3.72, 0.41, 0.18]
README_VOID_MILLIONS = 2.50


@pytest.fixture(scope="module")
def inspection():
    return inspect_data(DataConfig(kind="folder", root=str(CAMVID)), infer_classes=True)


def test_the_account_matches_the_readme(inspection):
    assert inspection.layout.name == "folder" and inspection.num_classes == 11
    assert inspection.reader.format.ignored == [11]  # classes.txt's "Unlabelled(void,ignore)"
    assert (
        inspection.reader.class_names[2] == "Pole"
        and inspection.reader.class_names[10] == "Bicyclist"
    )
    assert inspection.reader.format.codec.name == "index"
    train, val = inspection.splits
    assert (train.name, train.pairs, val.name, val.pairs) == ("train", 367, "val", 101)
    assert dict(train.image_sizes) == {(480, 360): 367}
    assert np.round(train.class_pixels / 1e6, 2).tolist() == README_TRAIN_MILLIONS
    assert round(train.ignored_pixels / 1e6, 2) == README_VOID_MILLIONS
    assert not inspection.errors
    assert inspection.seconds < 30  # a few seconds on a laptop; generous for a busy CI machine


def test_weights_agree_with_a_plain_count(inspection):
    pixels, presence = np.zeros(11), np.zeros(11)
    for path in sorted((CAMVID / "train" / "masks").iterdir()):
        counts = np.bincount(np.asarray(Image.open(path)).ravel(), minlength=12)[:11]
        pixels += counts
        presence += (counts > 0) * counts.sum()
    frequency = pixels / presence
    expected = np.median(frequency) / frequency
    train = inspection.splits[0]
    weights = median_frequency_weights(train.class_pixels, train.presence_pixels)
    assert weights == pytest.approx(expected)
    assert weights[4] == pytest.approx(1.0)  # Pavement is the median class
    # SegNet's published weights rank the classes alike except SignSymbol (see the report).
    segnet = [
        0.2595,
        0.1826,
        4.5640,
        0.1417,
        0.9051,
        0.3826,
        9.6446,
        1.8418,
        0.6823,
        6.2478,
        7.3614,
    ]
    others = [c for c in range(11) if c != 6]
    assert np.argsort(weights[others]).tolist() == np.argsort(np.array(segnet)[others]).tolist()


def test_the_recipe_trains_at_half_resolution_and_validates_at_full():
    config = load_config(resolve_config("camvid")).data
    data = replace(config, root=str(CAMVID))  # the recipe's root is relative to the checkout
    check_before_training(data)
    image, mask = make_dataset(data, "train", train=True)[0]
    assert image.shape == (3, 180, 240) and mask.shape == (180, 240)
    image, mask = make_dataset(data, "val", train=False)[0]
    assert image.shape == (3, 360, 480)
    assert set(np.unique(mask.numpy())) <= set(range(11)) | {255}
