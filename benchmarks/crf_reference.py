"""fcnseg's windowed dense CRF beside Krähenbühl's own (pydensecrf2) on a few CamVid val images.

pydensecrf2 is never an fcnseg dependency (it is compiled C++); it lives in an environment of its
own, with fcnseg installed beside it:

    python3 -m venv /tmp/crf-reference
    /tmp/crf-reference/bin/pip install -c constraints.txt torch==2.13.0 cython
    /tmp/crf-reference/bin/pip install -c constraints.txt -e . pydensecrf2
    /tmp/crf-reference/bin/python benchmarks/crf_reference.py [--images 3] [--checkpoint CKPT]

Without pydensecrf2 importable it says so and exits 0. Unaries: a checkpoint's logits, or (with
no checkpoint) the truth made noisy, so that the CRF has something to clean. Both CRFs run with
the same kernels, Potts compatibility and 5 iterations; pydensecrf2 with NO_NORMALIZATION, the
2011 paper's form, which fcnseg implements. Reported: how often the two agree on the label, the
largest and mean difference of the marginals Q, and each one's mIoU against the truth, for

    near-exact   theta_alpha 5, window 31 x dilation 1 (3 theta_alpha each side: hardly cut)
    defaults     theta_alpha 80, window 11 x dilation 4 (cut at 20 px: the windowed estimate)

Expected differences beyond the window: pydensecrf's permutohedral lattice is approximate too,
and its Potts form (-w [l == l'], with the pixel's own term in the filter) differs from
w [l != l'] by a per-pixel constant, which the softmax cancels, plus that own term.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import fcnseg
from fcnseg.config import CRFParameters, load_config
from fcnseg.data import make_dataset
from fcnseg.models.crf import colour_image, dense_crf

ROOT = Path(__file__).resolve().parents[1]
CAMVID = ROOT.parent / "shared" / "data" / "camvid"
SETTINGS = {
    "near-exact": CRFParameters(appearance_position_sigma=5.0, window=31, dilation=1),
    "defaults": CRFParameters(),
}


def reference(log_probabilities: np.ndarray, rgb: np.ndarray, parameters: CRFParameters):
    """pydensecrf2's marginals, (K, H, W), from (K, H, W) log-probabilities and (H, W, 3) uint8."""
    import pydensecrf.densecrf as dcrf

    classes, height, width = log_probabilities.shape
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(-log_probabilities.reshape(classes, -1), np.float32))
    crf.addPairwiseGaussian(
        sxy=parameters.smoothness_sigma,
        compat=parameters.smoothness_weight,
        normalization=dcrf.NO_NORMALIZATION,
    )
    crf.addPairwiseBilateral(
        sxy=parameters.appearance_position_sigma,
        srgb=parameters.appearance_colour_sigma,
        rgbim=np.ascontiguousarray(rgb),
        compat=parameters.appearance_weight,
        normalization=dcrf.NO_NORMALIZATION,
    )
    return np.asarray(crf.inference(parameters.iterations)).reshape(classes, height, width)


def unaries(predictor, image: torch.Tensor, mask: torch.Tensor, classes: int) -> torch.Tensor:
    """(1, K, H, W) log-probabilities: the checkpoint's, or the truth with noise."""
    if predictor is not None:
        return predictor.logits(image[None]).log_softmax(dim=1)
    generator = torch.Generator().manual_seed(0)
    truth = torch.nn.functional.one_hot(mask.clamp(max=classes - 1), classes).permute(2, 0, 1)
    noisy = 2.0 * truth.float() + 1.5 * torch.randn(truth.shape, generator=generator)
    return noisy[None].log_softmax(dim=1)


def miou(labels: np.ndarray, mask: np.ndarray, classes: int) -> float:
    matrix = fcnseg.ConfusionMatrix(classes)
    matrix.update(torch.from_numpy(labels)[None], torch.from_numpy(mask)[None])
    return matrix.compute().miou


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=CAMVID)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--checkpoint", help="unaries from this model (default: noisy truth)")
    args = parser.parse_args()
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        print("pydensecrf2 is not importable here; set up its environment as the docstring says.")
        return
    predictor = fcnseg.load(args.checkpoint, "cpu") if args.checkpoint else None
    data = predictor.data if predictor else load_config(ROOT / "configs" / "camvid.yaml").data
    data = replace(data, kind="folder", root=str(args.data))
    dataset = make_dataset(data, "val", train=False)
    print("| image | setting | label agreement | max abs dQ | mean abs dQ | mIoU fcnseg | "
          "mIoU pydensecrf | s fcnseg | s pydensecrf |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for index in range(min(args.images, len(dataset))):
        image, mask = dataset[index]
        log_p = unaries(predictor, image, mask, data.num_classes)
        colours = colour_image(image[None], data.mean, data.std)
        rgb = colours[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        for name, parameters in SETTINGS.items():
            start = time.perf_counter()
            ours = dense_crf(log_p, colours, parameters)[0].exp().numpy()
            middle = time.perf_counter()
            theirs = reference(log_p[0].numpy(), rgb, parameters)
            end = time.perf_counter()
            difference = np.abs(ours - theirs)
            agreement = (ours.argmax(0) == theirs.argmax(0)).mean()
            truth = mask.numpy()
            print(f"| {dataset.source.names[index]} | {name} | {100 * agreement:.1f}% "
                  f"| {difference.max():.3f} | {difference.mean():.4f} "
                  f"| {100 * miou(ours.argmax(0), truth, data.num_classes):.1f} "
                  f"| {100 * miou(theirs.argmax(0), truth, data.num_classes):.1f} "
                  f"| {middle - start:.2f} | {end - middle:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
