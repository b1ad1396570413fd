"""The doctor's loss advice: its bands on constructed class tables, CamVid's real counts, and the
agreement with what was measured (the packaged CamVid recipe and README's CamVid results)."""

import re
from pathlib import Path

import numpy as np
import pytest

from fcnseg.config import DataConfig, load_config
from fcnseg.data.doctor.advice import class_spread, suggest_loss
from fcnseg.data.doctor.inspect import inspect_data
from tests.conftest import SHARED_DATA

CHECKOUT = Path(__file__).resolve().parents[3]
CAMVID = SHARED_DATA / "camvid"
# Pixels per class of CamVid's 367 training masks (Sky .. Bicyclist; void ignored), as the doctor
# counts them; test_camvid_counts_are_the_real_ones checks them against the data where it is.
CAMVID_TRAIN_PIXELS = [
    *(10682767, 14750079, 623349, 20076880, 2845085, 6166762),
    *(743859, 714595, 3719877, 405385, 184967),
]
PLAIN = {"loss": {"terms": [{"name": "cross_entropy"}]}}
SQRT = {"loss": {"terms": [{"name": "cross_entropy"}], "class_weights": "sqrt_median_frequency"}}
SQRT_DICE = {
    "loss": {
        "terms": [{"name": "cross_entropy"}, {"name": "dice", "weight": 1.0}],
        "class_weights": "sqrt_median_frequency",
    }
}


@pytest.mark.parametrize(
    ("class_pixels", "spread", "expected"),
    [
        ([500, 500, 500], 1.0, PLAIN),
        ([1000, 100, 400], 10.0, PLAIN),  # the balanced band's edge is still balanced
        ([1001, 100, 400], 10.01, SQRT),
        ([5000, 0, 50, 900], 100.0, SQRT),  # an absent class does not count
        ([100_000, 100, 4000], 1000.0, SQRT),  # the moderate band's edge
        ([100_100, 100, 4000], 1001.0, SQRT_DICE),
        ([10**7, 30, 10**5, 10**6], 10**7 / 30, SQRT_DICE),
    ],
)
def test_bands_of_the_rule(class_pixels: list[int], spread: float, expected: dict):
    assert class_spread(np.array(class_pixels)) == pytest.approx(spread)
    assert suggest_loss(np.array(class_pixels))[1] == expected


def test_the_advice_says_why_and_cites_the_measurement():
    reason, _ = suggest_loss(np.array([1000, 10, 500]))
    assert reason.startswith("class pixels differ 100-fold (moderately imbalanced): cross-entropy")
    assert "57.2 val mIoU against 51.3" in reason and "README, 'CamVid in 20 CPU minutes'" in reason
    reason, _ = suggest_loss(np.array([10**6, 10, 500]))
    assert "100000-fold (extremely imbalanced" in reason and "not measured" in reason


def test_camvid_gets_the_recipe_that_was_measured_best():
    """CamVid's counts fall in the moderate band, and the advice is the packaged recipe's loss."""
    reason, sections = suggest_loss(np.array(CAMVID_TRAIN_PIXELS))
    assert reason.startswith("class pixels differ 109-fold")
    recipe = load_config(CHECKOUT / "src" / "fcnseg" / "configs" / "camvid.yaml").loss
    assert sections["loss"]["class_weights"] == recipe.class_weights == "sqrt_median_frequency"
    assert [term["name"] for term in sections["loss"]["terms"]] == [t.name for t in recipe.terms]


def test_readme_still_holds_the_figures_the_advice_quotes():
    """The advice quotes README's CamVid table; if those figures change, the advice must too."""
    readme = (CHECKOUT / "README.md").read_text()
    section = readme[readme.index('### CamVid in 20 CPU minutes ("camvid-cpu-20min")') :]

    def row(start: str) -> list[str]:
        line = next(line for line in section.splitlines() if line.startswith(start))
        return [cell.strip() for cell in line.strip("|").split("|")]

    assert row("| fcnseg: linknet/resnet18, cross_entropy, sqrt_median_frequency")[4] == "57.2"
    assert row("| fcnseg: linknet/resnet18, cross_entropy, median_frequency")[4] == "51.3"
    assert row("| Building")[1:3] == ["74.7", "46.2"]
    assert re.search(r"moderately imbalanced\)", suggest_loss(np.array(CAMVID_TRAIN_PIXELS))[0])


@pytest.mark.skipif(not CAMVID.is_dir(), reason=f"CamVid is not at {CAMVID}")
def test_camvid_counts_are_the_real_ones():
    config = DataConfig(kind="folder", root=str(CAMVID), num_classes=11)
    train = inspect_data(config, splits=["train"]).splits[0]
    assert train.class_pixels.tolist() == CAMVID_TRAIN_PIXELS
    assert suggest_loss(train.class_pixels)[1] == SQRT
