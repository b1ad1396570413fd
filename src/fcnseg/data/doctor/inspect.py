"""The label doctor: everything worth knowing about a dataset's labels before training on it.

`inspect_data` scans every split (scan.py: each mask read once, one `np.bincount` each, image
headers only) and applies the rules of findings.py. `fcnseg inspect` prints the account
(report.py) and exits non-zero on an error; `fcnseg train` runs `check_before_training`,
which refuses to start on one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnseg.config import DataConfig
from fcnseg.data.doctor.findings import Finding, find_problems
from fcnseg.data.doctor.scan import SplitScan, count_classes, scan_split
from fcnseg.data.layouts import Layout, resolve_layout
from fcnseg.data.masks.labels import LabelReader, build_label_map, infer_num_classes
from fcnseg.errors import FcnsegError


@dataclass
class Inspection:
    root: Path
    layout: Layout
    num_classes: int
    reader: LabelReader
    splits: list[SplitScan]
    findings: list[Finding]
    seconds: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "error"]


def inspect_data(
    config: DataConfig, infer_classes: bool = False, splits: list[str] | None = None
) -> Inspection:
    """Scan `splits` (default: every split the layout finds) of the dataset at data.root.

    infer_classes: take the number of classes from the class table or the masks rather than
    from data.num_classes (for `fcnseg inspect DATA_DIR` without a config).
    """
    started = time.perf_counter()
    if config.root is None:
        raise FcnsegError("data.root is not set; give the dataset's folder.")
    root = Path(config.root)
    layout = resolve_layout(root, config.layout)
    names = splits or layout.splits(root)
    findings, scans = [], []
    for split in names:
        try:
            scans.append(scan_split(root, layout, split, config, infer_classes))
        except FcnsegError as error:  # fatal only for a split that training reads
            needed = split in (config.train_split, config.val_split)
            findings.append(Finding("error" if needed else "warning", f"split '{split}': {error}"))
    if not scans:
        raise FcnsegError(findings[0].message if findings else f"{root} holds no split to read.")
    mask_format = scans[0].format
    seen = np.unique(
        np.concatenate([np.zeros(0, np.int64)] + [m.values for s in scans for m in s.masks])
    )
    num_classes = (
        infer_num_classes(mask_format, seen, config.ignore_index)
        if infer_classes
        else config.num_classes
    )
    label_map = build_label_map(mask_format, num_classes, config.ignore_index)
    reader = LabelReader(mask_format, label_map, config.class_names)
    for scan in scans:
        count_classes(scan, label_map)
    findings += find_problems(scans, config, reader, seen, names)
    return Inspection(
        root, layout, num_classes, reader, scans, findings, time.perf_counter() - started
    )


def check_before_training(config: DataConfig) -> Inspection:
    """The doctor's blocking checks on the training and validation splits; warnings are logged.
    Returns the inspection: its counts give the class weights without reading the masks again."""
    inspection = inspect_data(config, splits=[config.train_split, config.val_split])
    for finding in inspection.findings:
        if finding.severity == "warning":
            logging.getLogger(__name__).warning(finding.message)
    errors = inspection.errors
    if errors:
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise FcnsegError(
            f"the labels would spoil training: {errors[0].message.rstrip('.')}{more}; "
            f"`fcnseg inspect {config.root}` gives the full account."
        )
    return inspection
