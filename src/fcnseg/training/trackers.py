"""Experiment trackers: where a run's numbers and pictures go besides history.json.

    tensorboard   run_dir/tensorboard: event files (scalars, val overlays, the config as text);
                  extra `tensorboard`; view with `tensorboard --logdir runs/NAME/tensorboard`
    mlflow        run_dir/mlruns: an MLflow file store (metrics, params, overlay images), no
                  server, nothing sent anywhere; extra `mlflow` (mlflow-skinny); view with
                  `MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri runs/NAME/mlruns`

`train.trackers` names them: "auto" (the default) is tensorboard when its package is
installed and nothing otherwise, as before trackers could be chosen; `[tensorboard, mlflow]`
both; `[]` none. A name that is not registered, or whose package is missing, stops the run
before training with the extra to install. Every tracker gets the same calls from TrainingLog
(log.py): the flattened config once, then each epoch's scalars under the same tags
(train/loss, val/miou, ...) at the optimizer step, and the val overlay strip.

Each tracker writes only inside the run folder, so `--overwrite` and `--resume` treat its files
like the rest of the run: a resumed run appends to the same TensorBoard folder and MLflow run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fcnseg.errors import FcnsegError
from fcnseg.registry import lookup

TENSORBOARD_FOLDER, MLFLOW_FOLDER = "tensorboard", "mlruns"


class Tracker(Protocol):
    """What TrainingLog calls on every tracker; `step` is the optimizer step."""

    def log_params(self, params: Mapping[str, str]) -> None:
        """The run's settings once, as flattened dotted keys (see `config_params`)."""

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Scalars by tag (train/loss, val/miou, ...)."""

    def log_image(self, tag: str, step: int, image: np.ndarray) -> None:
        """A picture, (H, W, 3) uint8."""

    def flush(self) -> None:
        """Make what was logged readable now (called after each epoch)."""

    def close(self, finished: bool = True) -> None:
        """End the run; `finished` is False when training stopped before its end."""


class TensorBoardTracker:
    """Event files through torch's SummaryWriter, or any object with its add_scalar, add_image
    and flush (TrainingLog.writer). A writer handed in is flushed, not closed: its owner closes
    it; one that `open` made is closed with the run."""

    def __init__(self, writer: Any, owns_writer: bool = False) -> None:
        self.writer, self.owns_writer = writer, owns_writer

    @classmethod
    def open(cls, run_dir: Path, experiment: str) -> TensorBoardTracker:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch.utils.tensorboard needs the tensorboard package
            raise missing_package("tensorboard", "tensorboard") from error
        return cls(SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_FOLDER)), True)

    def log_params(self, params: Mapping[str, str]) -> None:
        if not params:
            return
        # TensorBoard's text tab renders Markdown: one table row per key; a bare "|" would end
        # a cell, even inside a code span.
        rows = [f"| {code_cell(key)} | {code_cell(value)} |" for key, value in params.items()]
        self.writer.add_text("config", "\n".join(["| key | value |", "|---|---|", *rows]), 0)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def log_image(self, tag: str, step: int, image: np.ndarray) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self, finished: bool = True) -> None:
        if self.owns_writer:
            self.writer.close()
        else:
            self.writer.flush()


class MLflowTracker:
    """One MLflow run in a file store under the run folder: experiment = the config's name,
    run name = the run folder's name. Through MlflowClient with an explicit file: URI, so that
    neither MLFLOW_TRACKING_URI nor any global MLflow state sends the run elsewhere."""

    def __init__(self, client: Any, run_id: str, store: Path) -> None:
        self.client, self.run_id, self.store = client, run_id, store

    @classmethod
    def open(cls, run_dir: Path, experiment: str) -> MLflowTracker:
        # Before the import: MLflow reads these when it loads and when it opens the store. The
        # file store is in maintenance mode in MLflow 3 and refused without the first; the second
        # turns off MLflow's usage telemetry. A user's own setting of either is kept.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            raise missing_package("mlflow", "mlflow-skinny") from error
        store = (Path(run_dir) / MLFLOW_FOLDER).resolve()
        client = MlflowClient(tracking_uri=store.as_uri())
        name = Path(run_dir).resolve().name
        experiment = experiment or name
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        # The store belongs to this run folder, so its runs are this run's sessions.
        existing = [run for run in client.search_runs([experiment_id]) if run.info.run_name == name]
        if existing:  # a resumed run carries on in the same MLflow run
            run_id = existing[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run_id = client.create_run(experiment_id, run_name=name).info.run_id
        return cls(client, run_id, store)

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        # MLflow refuses to change a param: a resumed run (whose --set may differ) logs only the
        # keys it lacks; its config.yaml stays the record of what it ran with.
        logged = self.client.get_run(self.run_id).data.params
        limit = _param_length_limit()
        new = [
            Param(key, value if len(value) <= limit else value[: limit - 3] + "...")
            for key, value in params.items()
            if key not in logged
        ]
        for start in range(0, len(new), 100):  # log_batch takes at most 100 params
            self.client.log_batch(self.run_id, params=new[start : start + 100])

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, float(value), now, step) for tag, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, tag: str, step: int, image: np.ndarray) -> None:
        self.client.log_image(self.run_id, image, key=tag, step=step)

    def flush(self) -> None:
        pass  # the file store writes each call through

    def close(self, finished: bool = True) -> None:
        if not self.store.is_dir():  # the failed run's folder was taken back: nothing to mark
            return
        self.client.set_terminated(self.run_id, status="FINISHED" if finished else "KILLED")


# name -> factory(run_dir, experiment name); the factory raises FcnsegError for a missing package
TRACKERS: dict[str, Callable[[Path, str], Tracker]] = {
    "tensorboard": TensorBoardTracker.open,
    "mlflow": MLflowTracker.open,
}


def open_trackers(
    names: str | list[str], run_dir: Path, experiment: str, params: Mapping[str, str]
) -> list[Tracker]:
    """The trackers `names` (config train.trackers) lists, opened, each given `params`."""
    # Every name is looked up before any tracker opens: a typo stops the run with nothing made.
    factories = [lookup(TRACKERS, name, "train.trackers name") for name in tracker_names(names)]
    trackers = [factory(run_dir, experiment) for factory in factories]
    for tracker in trackers:
        tracker.log_params(params)
    return trackers


def tracker_names(names: Any) -> list[str]:
    """`train.trackers` as a list of names: "auto" is tensorboard when it is installed."""
    if names == "auto":
        return ["tensorboard"] if tensorboard_installed() else []
    if isinstance(names, str):
        names = [names]  # `--set train.trackers=mlflow`: a single name
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise FcnsegError(
            f"config key 'train.trackers' is {names!r}; accepted: auto, or a list of tracker "
            f"names from {', '.join(TRACKERS)} ([] for none), e.g. [tensorboard, mlflow]."
        )
    return list(dict.fromkeys(names))  # a name given twice opens one tracker


def tensorboard_installed() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def missing_package(name: str, package: str) -> FcnsegError:
    return FcnsegError(
        f"train.trackers lists '{name}', but its package ({package}) is not installed; install "
        f"fcnseg's extra with pip install -e '.[{name}]' from its source folder (or pip install "
        f"{package}), or remove '{name}' from train.trackers."
    )


def config_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config dict as dotted keys and YAML-readable strings: train.lr -> "0.003",
    data.crop_size -> "[256, 256]"; a section with no keys (model.options: {}) stays "{}"."""
    params: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            params.update(config_params(value, f"{prefix}{key}."))
        else:
            params[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return params


def code_cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _param_length_limit() -> int:
    """The longest param value MLflow stores (500 in old versions, 6000 in newer ones)."""
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:
        return 500
    return int(MAX_PARAM_VAL_LENGTH)
