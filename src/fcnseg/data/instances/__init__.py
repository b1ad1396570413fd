"""Instance data: objects told apart, for the instance task (see fcnseg.models.instances).

maps.py        instance maps, class maps and tables, void masks -> the (2, H, W) target
folder.py      <root>/<split>/images, masks, classes, void
rle.py         COCO RLE (plain and compressed) and polygons, pixel for pixel as pycocotools
coco.py        COCO JSON files and their image folders; coco_masks.py paints their annotations
shapes.py      generated overlapping and touching shapes with exact maps
dataset.py     InstanceDataset, make_instance_dataset
doctor.py      statistics and problems of a split
boundaries.py  3-class masks (background, interior, boundary) for the watershed baseline
"""

from fcnseg.data.instances.boundaries import boundary_mask, write_boundary_masks
from fcnseg.data.instances.coco import CocoInstances
from fcnseg.data.instances.dataset import (
    InstanceDataset,
    make_instance_dataset,
    open_instance_split,
)
from fcnseg.data.instances.doctor import InstanceStatistics, inspect_instances
from fcnseg.data.instances.folder import InstanceFolder
from fcnseg.data.instances.maps import read_id_map, touching_pairs
from fcnseg.data.instances.shapes import (
    ShapesInstances,
    generate_instances,
    write_instance_shapes_folder,
)

__all__ = [
    "CocoInstances",
    "InstanceDataset",
    "InstanceFolder",
    "InstanceStatistics",
    "ShapesInstances",
    "boundary_mask",
    "generate_instances",
    "inspect_instances",
    "make_instance_dataset",
    "open_instance_split",
    "read_id_map",
    "touching_pairs",
    "write_boundary_masks",
    "write_instance_shapes_folder",
]
