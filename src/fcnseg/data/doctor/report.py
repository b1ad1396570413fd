"""What `fcnseg inspect` prints and writes: the account of a dataset, class weights and a loss.

The class weights shown are SegNet's median frequency balancing (Eigen and Fergus 2015;
Badrinarayanan et al. 2017), from the training split:

    freq_c   = pixels of class c / labelled pixels of the training images that contain c
    weight_c = median over classes of freq / freq_c

so a class as frequent as the median weighs 1 and rarer classes more (ignored pixels count for
nothing). A class absent from training gets weight 1, as `loss.class_weights: median_frequency`
gives it: there is nothing to weigh. They are computed by fcnseg.losses from this scan's counts,
the one implementation. The chart (fcnseg.report.figures.plot_class_pixels) shows each class's
share of the labelled pixels per split, in the dataset's own class colours.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fcnseg.data.doctor.findings import counted
from fcnseg.data.doctor.inspect import Inspection, SplitScan


def suggest_loss(class_pixels: np.ndarray) -> tuple[str, dict[str, dict[str, Any]]]:
    """A loss to start from, from the class balance: in words, and as config sections (`loss`,
    and `data` where two classes are best learned by one sigmoid output)."""
    share = class_pixels / max(class_pixels.sum(), 1)
    present = share[share > 0]
    spread = float(present.max() / present.min()) if len(present) else 1.0
    if len(class_pixels) == 2:
        return _binary_loss(share)
    if spread <= 10:
        reason = f"classes within {spread:.0f}-fold: plain cross-entropy"
        return reason, {"loss": {"terms": [{"name": "cross_entropy"}]}}
    terms = [{"name": "cross_entropy"}, {"name": "dice", "weight": 1.0}]
    reason = f"class pixels differ {spread:.0f}-fold: weighted cross-entropy plus Dice for the "
    reason += "small classes"
    return reason, {"loss": {"terms": terms, "class_weights": "median_frequency"}}


def _binary_loss(share: np.ndarray) -> tuple[str, dict[str, dict[str, Any]]]:
    """Two classes: one sigmoid output (data.num_classes: 1) with binary cross-entropy; when a
    class is rare, its foreground weighted and Dice added, which scores the rare class's overlap
    as a whole rather than by its few pixels."""
    data = {"num_classes": 1}
    if share.min() >= 0.1:
        reason = "binary, classes balanced: one sigmoid output and binary cross-entropy"
        return reason, {"data": data, "loss": {"terms": [{"name": "binary_cross_entropy"}]}}
    terms = [{"name": "binary_cross_entropy"}, {"name": "dice", "weight": 1.0}]
    reason = f"binary with a rare class ({share.min():.1%} of the pixels): one sigmoid output, "
    reason += "binary cross-entropy weighted by median frequency, plus Dice"
    return reason, {"data": data, "loss": {"terms": terms, "class_weights": "median_frequency"}}


def training_scan(inspection: Inspection, train_split: str) -> SplitScan:
    """The split the weights come from: the training split, else the first one read."""
    return next((s for s in inspection.splits if s.name == train_split), inspection.splits[0])


def _amount(pixels: float) -> str:
    if pixels >= 1e6:
        return f"{pixels / 1e6:.2f}M"
    return f"{pixels / 1e3:.1f}k" if pixels >= 1e3 else f"{pixels:.0f}"


def _listed(counter: Counter, shown: int = 3) -> str:
    items = [f"{key} ({count})" for key, count in counter.most_common(shown)]
    return ", ".join(items) + (f", {len(counter) - shown} more" if len(counter) > shown else "")


def _header(inspection: Inspection) -> list[str]:
    reader = inspection.reader
    table = reader.format.table
    names = reader.class_names
    count = f"{len(names)}"
    if inspection.num_classes == 1:  # data.num_classes: 1 learns background and foreground
        count += f" (one sigmoid output: {', '.join(names)})"
    classes = (
        f"{count}, from {table.source}" if table else f"{count}, numbered (no class table found)"
    )
    if reader.format.ignored:
        rows = {entry.value: entry.name for entry in table.entries} if table else {}
        ignored = ", ".join(f"{v} {rows.get(v, '')}".strip() for v in reader.format.ignored)
        classes += f"; ignored: {ignored} (by {reader.format.ignored_by})"
    kinds = sum((scan.image_kinds for scan in inspection.splits), Counter())
    mask_files = sum((scan.mask_kinds for scan in inspection.splits), Counter())
    masks = sum(len(scan.masks) for scan in inspection.splits)
    return [
        f"dataset  {inspection.root}  ({masks} masks read in {inspection.seconds:.1f} s)",
        f"layout   {inspection.layout.name}: {inspection.layout.description}",
        f"classes  {classes}",
        f"masks    {reader.format.codec.description}; files by mode: {_listed(mask_files)}",
        f"images   {_listed(kinds)}",
    ]


def _split_table(inspection: Inspection) -> list[str]:
    lines = ["", f"{'split':<10} {'pairs':>6}  {'ignored':>8}  image sizes (width x height)"]
    for scan in inspection.splits:
        total = scan.class_pixels.sum() + scan.ignored_pixels
        ignored = f"{scan.ignored_pixels / max(total, 1):.1%}"
        sizes = Counter({f"{w}x{h}": n for (w, h), n in scan.image_sizes.items()})
        lines.append(f"{scan.name:<10} {scan.pairs:>6}  {ignored:>8}  {_listed(sizes)}")
    return lines


def _class_table(inspection: Inspection, weights: np.ndarray) -> list[str]:
    names = inspection.reader.class_names
    width = max(len(name) for name in [*names, "ignored"]) + 4
    header = f"{'class':<{width}}" + "".join(f"{scan.name:>16}" for scan in inspection.splits)
    lines = ["", "pixels per class (share of labelled pixels)", header + f"{'weight':>9}"]
    for label, name in enumerate(names):
        row = f"{label:>2} {name:<{width - 3}}"
        for scan in inspection.splits:
            pixels = scan.class_pixels[label]
            share = pixels / max(scan.class_pixels.sum(), 1)
            row += f"{_amount(pixels):>9} {share:>6.1%}" if pixels else f"{'absent':>16}"
        lines.append(row + f"{weights[label]:>9.4f}")
    ignored = "".join(f"{_amount(scan.ignored_pixels):>9}       " for scan in inspection.splits)
    return [*lines, f"{'   ignored':<{width}}{ignored}".rstrip()]


def format_report(
    inspection: Inspection, train_split: str, weights: np.ndarray, chart: Path | None
) -> str:
    """The whole account as text, ending with the verdict. `weights` are the median-frequency
    class weights of the training split (fcnseg.losses.median_frequency_weights of its counts:
    the data layer computes no loss weights of its own)."""
    scan = training_scan(inspection, train_split)
    reason, sections = suggest_loss(scan.class_pixels)
    lines = [*_header(inspection), *_split_table(inspection), *_class_table(inspection, weights)]
    lines += [
        "",
        f"weights  median frequency balancing over '{scan.name}' (as SegNet): weight_c = "
        "median(freq) / freq_c,",
        "         freq_c = pixels of class c / labelled pixels of the images that contain c",
        f"loss     {reason}",
        *(f"         {name}: {json.dumps(section)}" for name, section in sections.items()),
    ]
    findings = inspection.findings
    lines += ["", "findings" if findings else "findings: none"]
    lines += [f"  {finding.severity:<8} {finding.message}" for finding in findings]
    errors, warnings = len(inspection.errors), len(findings) - len(inspection.errors)
    verdict = (
        f"NOT READY: {counted(errors, 'error')} would make training fail or learn nothing"
        if errors
        else "ready to train"
    )
    lines += ["", f"verdict  {verdict} ({counted(warnings, 'warning')})"]
    return "\n".join(lines + ([f"chart    {chart}"] if chart else []))


def inspection_dict(
    inspection: Inspection, train_split: str, weights: np.ndarray
) -> dict[str, Any]:
    """Everything of the report as plain data, for inspect.json."""
    reader = inspection.reader
    return {
        "root": str(inspection.root),
        "layout": inspection.layout.name,
        "mask_encoding": reader.format.codec.description,
        "class_names": reader.class_names,
        "colors": reader.palette[: len(reader.class_names)].tolist(),
        "ignored_values": reader.format.ignored,
        "class_weights": np.asarray(weights).tolist(),
        "splits": {
            s.name: {
                "pairs": s.pairs,
                "image_sizes": {f"{w}x{h}": n for (w, h), n in s.image_sizes.items()},
                "class_pixels": s.class_pixels.tolist(),
                "ignored_pixels": s.ignored_pixels,
            }
            for s in inspection.splits
        },
        "findings": [vars(finding) for finding in inspection.findings],
    }
