"""`fcnseg convert FORMAT SRC --out DIR`: an annotation tool's export (fcnseg.data.convert) into a
new folder in a layout fcnseg reads, then the label doctor's verdict on that folder and the
config keys that train on it.

The export is only read: --out may not lie inside it (nor inside --images), and is written
through fcnseg.storage like every run folder (a new folder, or with --overwrite one fcnseg made).
A conversion that stops on an error removes what it wrote into a folder it made.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fcnseg.commands.instances import inspect_text
from fcnseg.config import DataConfig
from fcnseg.data.convert import Summary, converter, write_export
from fcnseg.data.convert.items import OVERLAP_RULE
from fcnseg.data.doctor.inspect import inspect_data
from fcnseg.data.doctor.report import format_report, training_scan
from fcnseg.data.instances import inspect_instances
from fcnseg.errors import FcnsegError
from fcnseg.losses import median_frequency_weights
from fcnseg.storage.folders import MARKER, run_folder

NOTES_SHOWN = 8  # the rest are in convert.json


def convert(
    format_name: str,
    source: str,
    out: str,
    overwrite: bool = False,
    task: str = "semantic",
    images: str | None = None,
    classes: str | None = None,
) -> tuple[str, bool]:
    """Convert, check and describe: the text to print, and whether the doctor found no error."""
    opener = converter(format_name)
    source_path, out_dir = Path(source), Path(out)
    images_path = Path(images) if images else None
    if not source_path.exists():
        raise FcnsegError(f"{source} does not exist; give the file or folder the tool exported.")
    _check_apart(out_dir, [source_path, *([images_path] if images_path else [])])
    names = [name.strip() for name in classes.split(",")] if classes else None
    export = opener(source_path, images_path, task, names)
    fresh = not out_dir.exists()
    try:
        with run_folder(out_dir, overwrite, [source_path, *filter(None, [images_path])], "convert"):
            summary = write_export(export, out_dir, task)
    except (FcnsegError, KeyboardInterrupt):
        _remove_partial(out_dir, fresh)
        raise
    finally:
        export.close()
    verdict, ready = _doctor(summary)
    return "\n".join(
        [*_header(summary, export.tool, source), "", verdict, "", *_keys(summary)]
    ), ready


def _check_apart(out_dir: Path, reads: list[Path]) -> None:
    """--out must not lie in what the command reads: the export is never written to."""
    target = out_dir.resolve()
    for read in reads:
        folder = read.resolve()
        if read.is_dir() and (target == folder or folder in target.parents):
            raise FcnsegError(
                f"--out {out_dir} lies inside {read}, which fcnseg convert only reads; choose a "
                "folder outside it, e.g. beside it."
            )


def _remove_partial(out_dir: Path, fresh: bool) -> None:
    """What a failed conversion wrote: the folder it made, or the contents it put into an empty
    one (run_folder replaced nothing else: a full folder needs --overwrite and fcnseg's mark)."""
    if not (out_dir / MARKER).is_file():
        return
    if fresh:
        shutil.rmtree(out_dir)
        return
    for entry in out_dir.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _header(summary: Summary, tool: str, source: str) -> list[str]:
    splits = ", ".join(f"{split} {len(names)}" for split, names in summary.splits.items())
    count = sum(len(names) for names in summary.splits.values())
    lines = [
        f"converted {count} images of the {tool} export {source} into {summary.out_dir} "
        f"({summary.task}, data.layout {summary.layout}): {splits}",
        f"classes  {', '.join(summary.class_names)}",
    ]
    if summary.notes:
        lines.append(f"notes    {len(summary.notes)}; {OVERLAP_RULE}")
        lines += [f"  - {note}" for note in summary.notes[:NOTES_SHOWN]]
        if len(summary.notes) > NOTES_SHOWN:
            lines.append(f"  ... all of them in {summary.out_dir / 'convert.json'}")
    return lines


def _doctor(summary: Summary) -> tuple[str, bool]:
    """The label doctor on the written folder, as `fcnseg inspect` would print it."""
    root = str(summary.out_dir)
    if summary.task == "instance":
        names = summary.class_names
        data = DataConfig(kind="folder", root=root, num_classes=len(names), class_names=names)
        statistics = [
            inspect_instances(data, split) for split in (data.train_split, data.val_split)
        ]
        text, ready = inspect_text(statistics)
        return f"label doctor\n{text}\nverdict  {'ready to train' if ready else 'NOT READY'}", ready
    data = DataConfig(kind="folder", root=root, layout="lists")
    inspection = inspect_data(data, infer_classes=True)
    scan = training_scan(inspection, data.train_split)
    weights = median_frequency_weights(scan.class_pixels, scan.presence_pixels)
    summary.class_names = inspection.reader.class_names  # as fcnseg reads them back
    return format_report(inspection, data.train_split, weights, None), not inspection.errors


def _keys(summary: Summary) -> list[str]:
    """The config keys that train on the converted folder."""
    lines = ["train on it with these config keys (in your YAML, or as --set data.KEY=VALUE):"]
    if summary.task == "instance":
        lines.append("  task: instance")
    lines += [
        "  data:",
        "    kind: folder",
        f"    root: {json.dumps(str(summary.out_dir))}",
        f"    layout: {summary.layout}",
        f"    num_classes: {len(summary.class_names)}",
        f"    class_names: {json.dumps(summary.class_names)}",
    ]
    return lines
