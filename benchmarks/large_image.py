"""Peak memory of `fcnseg predict` on huge greyscale images: bounded by the tile, not the image.

For each (image side, file format, tile size) the prediction runs in a fresh child process, which
reports its own peak resident memory (resource.getrusage ru_maxrss) and wall time; the mask and
overlay PNGs are written band by band as tiles finish (fcnseg.inference.streaming). Formats:

    tiff   uncompressed 8-bit TIFF: read band by band from the file, so nothing grows with the image
    png    PNG cannot be read in parts: decoded once into uint8 (side^2 bytes), the rest in bands

The model is an untrained greyscale U-Net (weights do not change memory or speed); only its tile
matters. Whole-image inference of a 12000 x 12000 image would need about
side^2 x bytes_per_pixel (the Predictor's estimate, printed) -- far beyond any budget.

    .venv/bin/python benchmarks/large_image.py                        # 3000, 6000, 12000; tile 512
    .venv/bin/python benchmarks/large_image.py --sides 12000 --tiles 256 512 1024
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fcnseg.checkpoint import ModelSpec, model_checkpoint, save_checkpoint
from fcnseg.config import Config

NUM_CLASSES = 3


def write_checkpoint(path: Path, base_width: int) -> None:
    """An untrained greyscale U-Net checkpoint (normalisation mean 0.5, std 0.25)."""
    torch.manual_seed(0)
    spec = ModelSpec("unet", NUM_CLASSES, 1, {"base_width": base_width})
    config = Config()
    config.data.image_mode, config.data.mean, config.data.std = "L", (0.5,), (0.25,)
    config.data.num_classes = NUM_CLASSES
    names = ["background", "membrane", "cell"]
    save_checkpoint(model_checkpoint(spec.build(), spec, config, names), path)


def write_image(path: Path, side: int) -> None:
    """A side x side greyscale image of soft blobs, written without holding floats of it."""
    rows = np.arange(side, dtype=np.float32)[:, None]
    if path.suffix == ".tif":
        import tifffile

        image = tifffile.memmap(path, shape=(side, side), dtype=np.uint8)  # uncompressed
        for top in range(0, side, 1024):
            band = rows[top : top + 1024]
            columns = np.arange(side, dtype=np.float32)[None]
            image[top : top + 1024] = 127 + 100 * np.sin(band / 37) * np.cos(columns / 53)
        image.flush()
        del image
        return
    from PIL import Image

    columns = np.arange(side, dtype=np.float32)[None]
    picture = np.empty((side, side), np.uint8)
    for top in range(0, side, 1024):
        picture[top : top + 1024] = 127 + 100 * np.sin(rows[top : top + 1024] / 37) * np.cos(
            columns / 53
        )
    Image.fromarray(picture).save(path)


def measure(checkpoint: Path, image: Path, out: Path, tile: int, threads: int) -> dict:
    """Run in a child: predict one image, report peak RSS and time."""
    from fcnseg.commands import predict
    from fcnseg.inference.predictor import InferenceOptions

    torch.set_num_threads(threads)
    start = time.perf_counter()
    options = InferenceOptions(mode="tiled", tile_size=tile)
    failures = predict(str(checkpoint), str(image), str(out), True, "torch", None, options, False)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    return {"peak_mb": peak_mb, "seconds": seconds, "failures": failures}


def run_child(checkpoint: Path, image: Path, out: Path, tile: int, threads: int = 2) -> dict:
    """Measure one prediction in a fresh process, so that its peak memory is its own."""
    arguments = [str(checkpoint), str(image), str(out), str(tile), str(threads)]
    command = [sys.executable, __file__, "--child", *arguments]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"the measurement failed:\n{finished.stderr}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[3000, 6000, 12000])
    parser.add_argument("--tiles", type=int, nargs="+", default=[512])
    parser.add_argument("--formats", nargs="+", default=["tiff", "png"])
    parser.add_argument("--base-width", type=int, default=8, help="U-Net width (speed only)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        checkpoint, image, out, tile, threads = args.child
        result = measure(Path(checkpoint), Path(image), Path(out), int(tile), int(threads))
        print(json.dumps(result))
        return
    print(f"{'image':>13} {'format':>6} {'tile':>5} {'peak RSS MB':>11} {'seconds':>8}  note")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        checkpoint = folder / "model.pt"
        write_checkpoint(checkpoint, args.base_width)
        for side in args.sides:
            for kind in args.formats:
                image = folder / f"image{side}.{'tif' if kind == 'tiff' else 'png'}"
                write_image(image, side)
                for tile in args.tiles:
                    result = run_child(checkpoint, image, folder / "out", tile, args.threads)
                    note = "FAILED " + "; ".join(result["failures"]) if result["failures"] else ""
                    print(
                        f"{side:>6}x{side:<6} {kind:>6} {tile:>5} {result['peak_mb']:>11.0f} "
                        f"{result['seconds']:>8.1f}  {note}"
                    )
                image.unlink()


if __name__ == "__main__":
    main()
