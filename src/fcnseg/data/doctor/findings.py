"""The label doctor's rules: what in a scanned dataset would spoil training, and what is odd.

Errors mean training would fail (no such split, images of several sizes in one batch, files that
cannot be read, labels in no class) or learn nothing (a single class, 0/255 masks whose 255 is
ignored); warnings are worth a look (classes absent from a split, one-class masks, unused masks,
16-bit images that would look black).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fcnseg.config import DataConfig
from fcnseg.data.doctor.scan import PROBLEMS, SplitScan
from fcnseg.data.masks.labels import LabelReader


def counted(count: int, noun: str) -> str:
    """3 masks, 1 mask, 2 classes."""
    return f"{count} {noun}" + ("" if count == 1 else "es" if noun.endswith("s") else "s")


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": training would fail or learn nothing; "warning": worth a look
    message: str


def find_problems(
    scans: list[SplitScan],
    config: DataConfig,
    reader: LabelReader,
    seen: np.ndarray,
    names: list[str],
) -> list[Finding]:
    findings = [
        Finding(
            "error",
            f"{scan.name}: {len(sentences)} {PROBLEMS[kind]}; the first: {sentences[0]}"
            if len(sentences) > 1
            else f"{scan.name}: {sentences[0]}",
        )
        for scan in scans
        for kind, sentences in scan.problems.items()
        if sentences
    ]
    findings += _split_findings(scans, config, names)
    findings += _encoding_findings(scans, config, reader, seen)
    for scan in scans:
        findings += _class_findings(scan, config, reader.class_names)
    return findings


def _split_findings(scans: list[SplitScan], config: DataConfig, names: list[str]) -> list[Finding]:
    """Training reads data.train_split and data.val_split, in batches of one image size."""
    findings = [
        Finding(
            "error",
            f"there is no split '{split}' (found: {', '.join(names) or 'none'}); training reads "
            f"it, so set data.{key} to one of the splits.",
        )
        for key, split in (("train_split", config.train_split), ("val_split", config.val_split))
        if split not in names
    ]
    for scan in scans:
        sizes = scan.image_sizes
        resized = scan.name == config.train_split and config.train_resize is not None
        cropped = scan.name == config.train_split and config.crop_size is not None
        if len(sizes) > 1 and config.batch_size > 1 and not (resized or cropped):
            shown = ", ".join(f"{w}x{h}" for (w, h), _ in sizes.most_common(3))
            findings.append(
                Finding(
                    "error",
                    f"{scan.name}: images come in {len(sizes)} sizes ({shown}, ...) but a batch "
                    f"of {config.batch_size} needs one size; set data.crop_size (training) or "
                    "data.batch_size: 1.",
                )
            )
        if scan.unpaired:
            findings.append(
                Finding(
                    "warning",
                    f"{scan.name}: {counted(len(scan.unpaired), 'mask')} without an image, unused, "
                    f"e.g. {scan.unpaired[0]}.",
                )
            )
    return findings


def _encoding_findings(
    scans: list[SplitScan], config: DataConfig, reader: LabelReader, seen: np.ndarray
) -> list[Finding]:
    """Encodings that read without error but would teach the wrong thing."""
    findings = []
    descriptions = {scan.format.codec.description for scan in scans}
    if len(descriptions) > 1:
        findings.append(
            Finding("warning", f"splits differ in mask encoding: {'; '.join(descriptions)}.")
        )
    codec = reader.format.codec
    if codec.name == "index" and set(seen.tolist()) == {0, 255} and config.ignore_index == 255:
        findings.append(
            Finding(
                "error",
                "the masks hold only 0 and 255, read as class numbers with 255 = ignore, so "
                "every 255 pixel would be ignored; if 255 marks the foreground, set "
                "data.mask_encoding: binary (0 -> 0, 255 -> 1) and data.num_classes: 1 (one "
                "sigmoid output; 2 for softmax).",
            )
        )
    widest = max(scan.widest_value for scan in scans)
    scaled_by_depth = config.image_bit_depth is None and config.image_scaling == "bit_depth"
    if scaled_by_depth and 0 < widest < 2**12:
        findings.append(
            Finding(
                "warning",
                f"16-bit images use values up to {widest:g} only, so scaled by 65535 they look "
                "almost black; set data.image_bit_depth (12 for 0..4095) or image_scaling: "
                "per_image.",
            )
        )
    return findings


def _class_findings(scan: SplitScan, config: DataConfig, names: list[str]) -> list[Finding]:
    findings = []
    learned = np.flatnonzero(scan.class_pixels > 0)
    training = scan.name == config.train_split
    if training and len(learned) < 2:
        only = f"only {names[learned[0]]}" if len(learned) else "no class at all"
        findings.append(
            Finding(
                "error",
                f"{scan.name}: the labelled pixels are {only}, so a model can learn nothing "
                "from them; check data.num_classes, data.ignore_labels and the mask encoding.",
            )
        )
    absent = [names[c] for c in np.flatnonzero(scan.class_pixels == 0)]
    if absent and len(learned):
        effect = "the model never learns them" if training else "their IoU cannot be measured"
        listed = ", ".join(absent[:8])
        message = f"{scan.name}: {counted(len(absent), 'class')} never occur ({listed}): {effect}."
        findings.append(Finding("warning", message))
    if scan.one_class:
        path, label = scan.one_class[0]
        masks = counted(len(scan.one_class), "mask")
        message = f"{scan.name}: {masks} of a single class, e.g. {path} is all {names[label]}."
        findings.append(Finding("warning", message))
    return findings
