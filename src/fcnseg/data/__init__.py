"""Datasets, transforms and loaders (see dataset.py for the contract every item follows)."""

from fcnseg.data.dataset import SegmentationDataset, make_dataset, make_loader, open_split
from fcnseg.data.folder import FolderDataset
from fcnseg.data.synthetic import ShapesDataset, write_shapes_folder

__all__ = [
    "FolderDataset",
    "SegmentationDataset",
    "ShapesDataset",
    "make_dataset",
    "make_loader",
    "open_split",
    "write_shapes_folder",
]
