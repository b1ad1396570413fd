"""Datasets, transforms and loaders (see dataset.py for the contract every item follows)."""

from fcnseg.data.dataset import SegmentationDataset, make_dataset, make_loader, open_split
from fcnseg.data.folder import FolderDataset
from fcnseg.data.images import image_channels, read_image
from fcnseg.data.synthetic import ShapesDataset, write_shapes_folder

__all__ = [
    "FolderDataset",
    "SegmentationDataset",
    "ShapesDataset",
    "image_channels",
    "make_dataset",
    "make_loader",
    "open_split",
    "read_image",
    "write_shapes_folder",
]
