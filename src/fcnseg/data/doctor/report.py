"""What `fcnseg inspect` prints and writes: the account of a dataset, class weights and a loss.

The class weights shown are SegNet's median frequency balancing (Eigen and Fergus 2015;
Badrinarayanan et al. 2017), from the training split:

    freq_c   = pixels of class c / labelled pixels of the training images that contain c
    weight_c = median over classes of freq / freq_c

so a class as frequent as the median weighs 1 and rarer classes more (ignored pixels count for
nothing), and beside them their square roots (`loss.class_weights: sqrt_median_frequency`), the
gentler weights the advice picks for imbalanced data (advice.py says why). A class absent from
training gets weight 1, as `loss.class_weights: median_frequency` gives it: there is nothing to
weigh. They are computed by fcnseg.losses from this scan's counts, the one implementation (the
square root is only shown here). The chart (fcnseg.report.figures.plot_class_pixels) shows each
class's share of the labelled pixels per split, in the dataset's own class colours.
"""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fcnseg.data.doctor.advice import suggest_loss
from fcnseg.data.doctor.findings import counted
from fcnseg.data.doctor.inspect import Inspection, SplitScan

__all__ = ["format_report", "inspection_dict", "suggest_loss", "training_scan"]


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
        f"layout   {inspection.layout.name}: {inspection.layout.describe(inspection.root)}",
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
    columns = f"{'weight':>9}{'sqrt':>8}"
    lines = ["", "pixels per class (share of labelled pixels)", header + columns]
    for label, name in enumerate(names):
        row = f"{label:>2} {name:<{width - 3}}"
        for scan in inspection.splits:
            pixels = scan.class_pixels[label]
            share = pixels / max(scan.class_pixels.sum(), 1)
            row += f"{_amount(pixels):>9} {share:>6.1%}" if pixels else f"{'absent':>16}"
        lines.append(row + f"{weights[label]:>9.4f}{np.sqrt(weights[label]):>8.4f}")
    ignored = "".join(f"{_amount(scan.ignored_pixels):>9}       " for scan in inspection.splits)
    return [*lines, f"{'   ignored':<{width}}{ignored}".rstrip()]


def format_report(
    inspection: Inspection, train_split: str, weights: np.ndarray, chart: Path | None
) -> str:
    """The whole account as text, ending with the verdict. `weights` are the median-frequency
    class weights of the training split (fcnseg.losses.median_frequency_weights of its counts:
    the data layer computes no loss weights of its own; the sqrt column only shows their square
    roots, as `sqrt_median_frequency` takes them)."""
    scan = training_scan(inspection, train_split)
    reason, sections = suggest_loss(scan.class_pixels)
    lines = [*_header(inspection), *_split_table(inspection), *_class_table(inspection, weights)]
    lines += [
        "",
        f"weights  median frequency balancing over '{scan.name}' (as SegNet): weight_c = "
        "median(freq) / freq_c,",
        "         freq_c = pixels of class c / labelled pixels of the images that contain c;",
        "         sqrt: their square roots (loss.class_weights: sqrt_median_frequency)",
        *textwrap.wrap(f"loss     {reason}", 100, subsequent_indent=" " * 9),
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
    reason, sections = suggest_loss(training_scan(inspection, train_split).class_pixels)
    return {
        "root": str(inspection.root),
        "layout": inspection.layout.name,
        "mask_encoding": reader.format.codec.description,
        "class_names": reader.class_names,
        "colors": reader.palette[: len(reader.class_names)].tolist(),
        "ignored_values": reader.format.ignored,
        "class_weights": np.asarray(weights).tolist(),
        "class_weights_sqrt": np.sqrt(weights).tolist(),
        "loss_advice": {"reason": reason, "config": sections},
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
