"""`fcnseg predict` of an instance model: for each image <name>.<ext>

    <name>.png           the instance IDs as a 16-bit PNG: 1..M, best score first; 0 background
    <name>.json          {"instances": [{"id", "class", "class_name", "score", "box", "area"}]},
                         box = [x0, y0, x1, y1] in pixels, x1 and y1 exclusive (x1 - x0 is the
                         width); area = the instance's pixels in the PNG
    <name>_overlay.png   each instance in its own colour over the image, with its contour

Where masks overlap, the higher-scoring instance keeps the pixel (Instances.id_map); an instance
left without a pixel is dropped and the others renumbered, so the PNG holds exactly the IDs the
JSON lists. Names, reading, the atomic writes and going on past a bad file are files.py's: its
`predict_files` calls `predict_instance_file` for each image. Images are predicted whole (an
instance spans tiles), so a huge image needs the memory of one forward pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fcnseg.data.folder import read_image
from fcnseg.errors import FcnsegError
from fcnseg.inference.files import check_input
from fcnseg.inference.instance_pictures import paint_ids, renumbered
from fcnseg.inference.instances import InstancePredictor
from fcnseg.models.instances import Instances
from fcnseg.storage.atomic import atomic_path, write_text_atomically

MAX_PNG_ID = 2**16 - 1  # a 16-bit PNG


def instance_outputs(name: str) -> list[str]:
    """The files `predict_instance_file` writes for an input of output name `name`."""
    return [f"{name}.png", f"{name}.json", f"{name}_overlay.png"]


def instance_records(
    instances: Instances, class_names: list[str]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The (H, W) int64 ID map the PNG holds and the JSON's record of each of its IDs."""
    ids, kept = renumbered(instances.id_map().numpy())  # kept: index + 1 in `instances`
    if len(kept) > MAX_PNG_ID:
        raise FcnsegError(
            f"{len(kept)} instances do not fit a 16-bit PNG (at most {MAX_PNG_ID}); lower the "
            "model's max_detections."
        )
    areas = np.bincount(ids.ravel(), minlength=len(kept) + 1)
    records = []
    for new_id, old_id in enumerate(kept.tolist(), start=1):
        rows, columns = np.nonzero(ids == new_id)
        category = int(instances.classes[old_id - 1])
        name = class_names[category] if 0 <= category < len(class_names) else str(category)
        records.append(
            {
                "id": new_id,
                "class": category,
                "class_name": name,
                "score": round(float(instances.scores[old_id - 1]), 6),
                "box": [
                    int(columns.min()),
                    int(rows.min()),
                    int(columns.max()) + 1,
                    int(rows.max()) + 1,
                ],
                "area": int(areas[new_id]),
            }
        )
    return ids, records


def predict_instance_file(
    predictor: InstancePredictor, path: Path, out_dir: Path, name: str | None = None
) -> None:
    """Write <name>.png, <name>.json and <name>_overlay.png of one image (module docstring)."""
    data = predictor.data
    check_input(path, data)
    name = path.stem if name is None else name
    image = read_image(
        path, data.image_mode, data.image_alpha, data.image_bit_depth, data.image_scaling
    )
    ids, records = instance_records(predictor.predict_image(image), predictor.class_names)
    with atomic_path(out_dir / f"{name}.png") as partial:
        Image.fromarray(ids.astype(np.uint16)).save(partial, format="PNG")
    write_text_atomically(out_dir / f"{name}.json", json.dumps({"instances": records}, indent=1))
    with atomic_path(out_dir / f"{name}_overlay.png") as partial:
        Image.fromarray(paint_ids(image, ids)).save(partial, format="PNG")
