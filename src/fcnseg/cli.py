"""The `fcnseg` command line: the only module that reads argv.

    fcnseg demo [--task semantic|instance] [--out DIR] [--overwrite] [--set key=value ...]
    fcnseg train CONFIG [--set key=value ...] [--out DIR] [--overwrite]
    fcnseg train --resume RUN [--set train.epochs=N]      (RUN: a run folder or its last.pt)
    fcnseg evaluate CHECKPOINT --data DIR [--split val] [--out DIR] [--flip] [--scales ...]
                    [--crf] [--crf-set key=value ...]
    fcnseg inspect DATA_DIR [--config CONFIG] [--set key=value ...] [--out DIR] [--overwrite]
    fcnseg predict CHECKPOINT IMAGE_OR_DIR --out DIR [--backend auto|torch|onnx|openvino]
                   [--flip] ... [--skip-existing]   (under torchrun: files shared among ranks)
    fcnseg export CHECKPOINT [--out FILE] [--overwrite] [--int8 --calibrate DIR [--force]]
    fcnseg models
    fcnseg convert {cvat,coco,label-studio} SRC --out DIR [--task semantic|instance]
                   [--images DIR] [--classes A,B,...] [--overwrite]
    fcnseg serve CHECKPOINT_OR_ONNX [--host 127.0.0.1] [--port 8000] [--max-upload-mb 32]
                 [--max-pixels 50000000] [--max-queue 16] [--backend ...] [--mode ...] ...

A user's mistake (FcnsegError) is printed as one sentence with exit status 2, no traceback.
Ctrl-C ends a command with "interrupted" (status 130), SIGTERM likewise with "terminated"
(143): training finishes its step and its checkpoint first (fcnseg.storage.interrupts).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from fcnseg.errors import FcnsegError

DESCRIPTION = """\
Semantic and instance segmentation with fully convolutional networks: train a model on your
images, measure it honestly, see what it does, and deploy it."""
EPILOG = """\
examples:
  fcnseg demo                                 shapes -> trained U-Net -> runs/demo/report.html
  fcnseg inspect data/camvid                  what a dataset holds, what would spoil training
  fcnseg train camvid --set train.epochs=50   a packaged recipe (or your YAML file)
  fcnseg predict runs/demo/best.pt photos/ --out masks/      masks and overlays of your images

`fcnseg COMMAND --help` lists a command's options."""


def _version() -> str:
    """The installed distribution's version; the package's own where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fcnseg")
    except PackageNotFoundError:
        from fcnseg import __version__

        return __version__


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.01 (repeatable)",
    )


def _add_out(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--out", help=help_text)
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing fcnseg output folder"
    )


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose refusals are one line like every other user error: what is wrong and
    where the help is (argparse would print its whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="fcnseg",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fcnseg {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="generate shapes, train, evaluate and report")
    demo.add_argument(
        "--task",
        choices=("semantic", "instance"),
        default="semantic",
        help="semantic: a class per pixel (recipe demo); instance: objects told apart "
        "(recipe demo_instance)",
    )
    _add_out(demo, "run folder (default runs/demo, or runs/demo-instance for --task instance)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_set(demo)

    train = commands.add_parser("train", help="train from a YAML config or a packaged recipe")
    train.add_argument("config", nargs="?", help="YAML file, or a recipe name such as 'demo'")
    train.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run exactly where it stopped: its folder, or the last.pt in it",
    )
    _add_out(train, "run folder (default <output_dir>/<name> from the config)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_set(train)

    evaluate = commands.add_parser("evaluate", help="metrics and report of a checkpoint")
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--data", required=True, help="folder dataset root")
    evaluate.add_argument("--split", default="val")
    _add_out(evaluate, "output folder (default <checkpoint folder>/evaluation-<split>)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_inference_options(evaluate)

    predict = commands.add_parser("predict", help="masks and overlays for images")
    predict.add_argument("checkpoint")
    predict.add_argument("inputs", metavar="IMAGE_OR_DIR")
    _add_out(predict, "output folder (required; must not hold the inputs)")
    predict.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx", "openvino"),
        default="auto",
        help="auto: onnxruntime when the checkpoint's export (CKPT.onnx) is beside it, else "
        "torch; openvino: that export in OpenVINO (fp32, or bf16 with --precision bf16)",
    )
    predict.add_argument("--onnx", metavar="FILE", help="exported model (default: CKPT.onnx)")
    predict.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep the images whose outputs are complete and predict the rest, in a folder "
        "an earlier predict made (e.g. after it was stopped); nothing is deleted",
    )
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_inference_options(predict)

    export = commands.add_parser("export", help="ONNX (and int8) model for deployment")
    export.add_argument("checkpoint")
    export.add_argument("--out", help="the .onnx file to write (default beside the checkpoint)")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing fcnseg export at --out"
    )
    export.add_argument("--int8", action="store_true", help="static int8 quantization")
    export.add_argument("--calibrate", metavar="DIR", help="int8: images to calibrate on")
    export.add_argument("--data", help="int8: dataset judged on (default: the checkpoint's)")
    export.add_argument("--split", help="int8: split judged on (default: the config's val)")
    export.add_argument(
        "--max-drop", type=float, default=1.0, help="int8: most mIoU points it may lose"
    )
    export.add_argument("--force", action="store_true", help="int8: keep it past --max-drop")

    inspect = commands.add_parser(
        "inspect", help="the label doctor: what a dataset holds and what would spoil training"
    )
    inspect.add_argument("data_dir", nargs="?", help="dataset folder (default: --config's root)")
    inspect.add_argument("--config", help="YAML file or recipe whose data section applies")
    _add_out(inspect, "folder for class_pixels.png and inspect.json (default runs/inspect-NAME)")
    _add_set(inspect)

    commands.add_parser("models", help="list the registered models and their options")

    convert = commands.add_parser(
        "convert", help="labels from CVAT, COCO or Label Studio into a folder fcnseg reads"
    )
    convert.add_argument("format", metavar="{cvat,coco,label-studio}", help="the export's tool")
    convert.add_argument("source", metavar="SRC", help="CVAT zip or folder; COCO or LS JSON")
    _add_out(convert, "new folder for the converted dataset (required; outside SRC)")
    convert.add_argument("--task", choices=("semantic", "instance"), default="semantic")
    convert.add_argument("--images", metavar="DIR", help="the images, when the export lacks them")
    convert.add_argument("--classes", metavar="A,B,...", help="label-studio: class names in order")
    _add_serve(commands.add_parser("serve", help="a page and an HTTP API for a model"))
    return parser


def _add_serve(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("checkpoint", metavar="CHECKPOINT_OR_ONNX")
    serve.add_argument("--host", default="127.0.0.1", help="default: this machine only")
    serve.add_argument("--port", type=int, default=8000, help="default: 8000")
    serve.add_argument("--max-upload-mb", type=float, default=32, help="largest upload (32)")
    serve.add_argument("--max-pixels", type=int, default=50_000_000, help="largest image")
    serve.add_argument("--max-queue", type=int, default=16, help="requests at once; more: 503")
    serve.add_argument("--backend", choices=("auto", "torch", "onnx", "openvino"), default="auto")
    serve.add_argument("--onnx", metavar="FILE", help="exported model (default: CKPT.onnx)")
    _add_inference_options(serve)


def _load_commands(show_progress: bool) -> Any:
    """fcnseg.commands, whose import loads PyTorch (seconds on a cold start): meanwhile a line on
    the terminal says so, where there would be a blank screen (rank 0 alone under torchrun)."""
    if not show_progress or os.environ.get("RANK", "0") != "0":
        from fcnseg import commands

        return commands
    from rich.console import Console

    with Console().status("loading PyTorch"):
        from fcnseg import commands
    return commands


def _finished(report: Path) -> None:
    """A run's or an evaluation's headline scores, and its report.html: the page to open (the
    report.md beside it says the same in text)."""
    from fcnseg.commands.runs import score_line

    if scores := score_line(report.parent):
        print(scores)
    print(f"report: {report.parent / 'report.html'}")


def _demo(args: argparse.Namespace) -> int:
    commands = _load_commands(not args.no_progress)
    default_out = "runs/demo" if args.task == "semantic" else "runs/demo-instance"
    report = commands.demo(
        args.out or default_out,
        args.overwrite,
        args.overrides,
        show_progress=not args.no_progress,
        task=args.task,
    )
    _finished(report)
    return 0


def _train(args: argparse.Namespace) -> int:
    commands = _load_commands(not args.no_progress)
    from fcnseg.training import distributed

    if not args.resume and not args.config:
        raise FcnsegError(
            "fcnseg train needs a CONFIG (a YAML file or recipe) or --resume RUN (a run "
            "folder or its last.pt)."
        )
    distributed.start()  # under torchrun: join the other ranks; nothing in a plain process
    try:
        if args.resume:
            run = commands.resumed_run(args.resume, args.overrides)
        else:
            run = commands.started_run(args.config, args.overrides, args.out, args.overwrite)
        with run as (config, run_dir):  # the run folder stays locked while it trains
            report = commands.train(
                config, run_dir, resume=bool(args.resume), show_progress=not args.no_progress
            )
        if distributed.is_main():
            _finished(report)
    finally:
        distributed.stop()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    commands = _load_commands(not args.no_progress)
    report = commands.evaluate(
        args.checkpoint,
        args.data,
        args.split,
        args.out,
        args.overwrite,
        options=_inference_options(args),
        crf=_crf_overrides(args),
        show_progress=not args.no_progress,
    )
    _finished(report)
    return 0


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    """The Predictor's options (fcnseg.predict.InferenceOptions) as flags."""
    group = parser.add_argument_group("inference (tiles, test-time augmentation)")
    group.add_argument("--mode", choices=("auto", "whole", "tiled"), default="auto")
    group.add_argument("--tile-size", type=int, default=512, help="tile side in pixels")
    group.add_argument("--overlap", type=float, default=0.25, help="tile overlap, 0..1")
    group.add_argument("--blend", choices=("gaussian", "linear"), default="gaussian")
    group.add_argument("--memory-budget", type=float, default=2048, help="MB; auto mode")
    group.add_argument("--flip", action="store_true", help="TTA: average with the mirror image")
    group.add_argument(
        "--scales", type=float, nargs="+", default=[1.0], help="TTA: e.g. 0.75 1 1.25"
    )
    group.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    group.add_argument(
        "--crf",
        action="store_true",
        help="refine the scores with a dense CRF: the checkpoint config's inference.crf "
        "settings, else the defaults (fcnseg.models.crf)",
    )
    group.add_argument(
        "--crf-set",
        dest="crf_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a CRF setting, e.g. --crf-set appearance_weight=5 (repeatable; implies --crf)",
    )


def _inference_options(args: argparse.Namespace) -> Any:
    from fcnseg.inference.predictor import InferenceOptions

    return InferenceOptions(
        mode=args.mode,
        tile_size=args.tile_size,
        overlap=args.overlap,
        blend=args.blend,
        memory_budget_mb=args.memory_budget,
        flip=args.flip,
        scales=tuple(args.scales),
        precision=args.precision,
    )


def _crf_overrides(args: argparse.Namespace) -> list[str] | None:
    """None without --crf (and --crf-set); else the --crf-set overrides, maybe none."""
    return list(args.crf_overrides) if args.crf or args.crf_overrides else None


def _predict(args: argparse.Namespace) -> int:
    if not args.out:
        raise FcnsegError("fcnseg predict needs --out DIR, a folder for the masks and overlays.")
    commands = _load_commands(not args.no_progress)
    from fcnseg.training import distributed

    distributed.start()  # under torchrun: the files are shared out among the ranks
    try:
        failures = commands.predict(
            args.checkpoint,
            args.inputs,
            args.out,
            args.overwrite,
            backend=args.backend,
            onnx_path=args.onnx,
            options=_inference_options(args),
            show_progress=not args.no_progress,
            crf=_crf_overrides(args),
            skip_existing=args.skip_existing,
        )
        main_rank = distributed.is_main()
    finally:
        distributed.stop()
    if not main_rank:
        return 0  # rank 0 reports every rank's failures, and ends with status 1 for them
    print(f"masks and overlays: {args.out}")
    for failure in failures:  # at the end, where they are seen
        print(f"failed: {failure}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} image(s) could not be predicted (listed above)", file=sys.stderr)
    return 1 if failures else 0


def _export(args: argparse.Namespace) -> int:
    from fcnseg import commands

    commands.export(
        args.checkpoint,
        args.out,
        int8=args.int8,
        calibrate=args.calibrate,
        data_dir=args.data,
        split=args.split,
        max_drop=args.max_drop,
        force=args.force,
        overwrite=args.overwrite,
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from fcnseg import commands

    report, ready = commands.inspect(
        args.data_dir, args.config, args.overrides, args.out, args.overwrite
    )
    print(report)
    return 0 if ready else 1  # non-zero: training would fail or learn nothing


def _models(args: argparse.Namespace) -> int:
    from fcnseg.models import list_models, model_options

    for name in list_models():
        options = ", ".join(f"{key}={value!r}" for key, value in model_options(name).items())
        print(f"{name:<16} {options}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from fcnseg.commands.convert import convert

    if not args.out:
        raise FcnsegError("fcnseg convert needs --out DIR, a new folder for the converted data.")
    text, ready = convert(
        args.format, args.source, args.out, args.overwrite, args.task, args.images, args.classes
    )
    print(text)
    return 0 if ready else 1  # non-zero: the doctor found what would spoil training


def _serve(args: argparse.Namespace) -> int:
    from fcnseg.commands.serve import serve
    from fcnseg.serve.limits import Limits

    limits = Limits.from_flags(args.max_upload_mb, args.max_pixels, args.max_queue)
    options = (_inference_options(args), _crf_overrides(args))
    serve(args.checkpoint, args.host, args.port, limits, args.backend, args.onnx, *options)
    return 0


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
    "inspect": _inspect,
    "models": _models,
    "convert": _convert,
    "serve": _serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    share_the_cpu_politely()
    args = build_parser().parse_args(argv)
    status = run_command(args)
    from fcnseg.training.distributed import end_worker  # every command has loaded torch by now

    end_worker(status)  # a torchrun worker ends here (see there); a plain process goes on
    return status


def share_the_cpu_politely() -> None:
    """OpenMP threads that wait by sleeping, unless the user chose (OMP_WAIT_POLICY).

    By default PyTorch's OpenMP threads spin between parallel regions; on a machine where
    another process also wants the cores, a spinning thread burns the time slice its partner
    needs, and a CamVid training run beside one 2-thread process fell to 0.27x its idle speed;
    with PASSIVE it kept 0.57x, for 0-6% of idle speed (benchmarks/shared_cpu.py, README). It
    must be set before torch loads its OpenMP runtime: the commands import torch after this.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_command(args: argparse.Namespace) -> int:
    from fcnseg.storage.interrupts import EXIT_STATUS, Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            return HANDLERS[args.command](args)
    except FcnsegError as error:
        print(f"fcnseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_STATUS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
