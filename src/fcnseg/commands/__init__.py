"""What each command does, as plain functions of typed arguments (cli.py only parses argv, and is
the only module that imports this package).

    semantic.py    train, demo, evaluate, inspect, predict, export; each hands over to
                   instances.py where the config's task or the checkpoint's model is instance
    instances.py   the instance task's train, evaluate, predict and inspect
    prediction.py  predict, for both tasks, in one process or shared out under torchrun
    runs.py        a training run's config (a recipe or a YAML file, plus --set) and its folder
    serve.py       serve: a model behind an HTTP API and a page (fcnseg.serve; the serve extra)
"""

from fcnseg.commands.prediction import predict
from fcnseg.commands.runs import recipe_names, resolve_config, resumed_run, started_run
from fcnseg.commands.semantic import (
    demo,
    evaluate,
    export,
    inspect,
    seed_everything,
    train,
)

__all__ = [
    "demo",
    "evaluate",
    "export",
    "inspect",
    "predict",
    "recipe_names",
    "resolve_config",
    "resumed_run",
    "seed_everything",
    "started_run",
    "train",
]
