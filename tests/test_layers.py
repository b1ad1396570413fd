"""The package's layers, read from the source's imports (parsed, never run).

A batch travels config -> data -> models -> losses -> training -> inference -> metrics ->
report / export, and code may only reach down that path: a model never needs the trainer, a
data reader never needs matplotlib. Every import counts, also one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fcnseg"

FOUNDATION = {"config", "errors", "registry", "text_files"}
# package -> the fcnseg packages or modules it may import (besides itself)
ONLY = {
    "config": {"errors", "registry", "text_files"},
    "errors": set(),
    "registry": {"errors"},
    "text_files": {"errors"},  # reading what a user wrote: every layer may read through it
    "palette": set(),
    "storage": {"errors"},  # folders, locks, atomic files: every layer may write through it
    "models": FOUNDATION,
    "losses": FOUNDATION,
    "metrics": FOUNDATION,
}
# package -> what it must never import
NEVER = {
    "data": {"losses", "training", "inference", "report", "export", "commands", "cli"},
    "inference": {"training", "report", "export", "commands", "cli"},
    "training": {"report", "export", "commands", "cli"},
    "export": {"training", "report", "commands", "cli"},
    "report": {"training", "export", "commands", "cli"},
    "serve": {"training", "report", "export", "cli"},  # a model behind HTTP, nothing more
}
MATPLOTLIB_USERS = {"report"}  # pictures are drawn in one place; data and inference stay light


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> set[str]:
    """Every module `path` imports, absolute (`from fcnseg import x` counts as fcnseg.x)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative: resolve against this module's package
                package = module_name(path, root).split(".")
                package = package[: len(package) - node.level + (path.name == "__init__.py")]
                base = ".".join([*package, node.module])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> str | None:
    """'fcnseg.data.masks.labels' -> 'data'; 'fcnseg' itself -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "fcnseg" and len(parts) > 1 else None


def violations(root: Path) -> list[str]:
    """Each import that breaks a rule, as 'module imports target (rule)'."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        layer = layer_of(module)
        for target in sorted(imports_of(path, root)):
            target_layer = layer_of(target)
            if target.split(".")[0] == "matplotlib" and layer not in MATPLOTLIB_USERS:
                found.append(f"{module} imports {target} (matplotlib only in report)")
            if target_layer is None or target_layer == layer or layer is None:
                continue
            if layer in ONLY and target_layer not in ONLY[layer]:
                allowed = ", ".join(sorted(ONLY[layer]))
                found.append(f"{module} imports {target} ({layer} imports only {allowed})")
            if target_layer in NEVER.get(layer, set()):
                found.append(f"{module} imports {target} ({layer} never imports {target_layer})")
            if target_layer == "commands" and layer != "cli":
                found.append(f"{module} imports {target} (only cli imports commands)")
    return found


def backend_choices(root: Path) -> list[str]:
    """Modules that call matplotlib.use(...): choosing a backend is the application's business."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "use"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "matplotlib"
            ):
                found.append(module_name(path, root))
    return found


def test_no_layer_imports_a_higher_one():
    assert violations(PACKAGE) == []


def test_no_module_chooses_a_matplotlib_backend():
    assert backend_choices(PACKAGE) == []


def test_the_rules_catch_what_they_are_for(tmp_path: Path):
    """The checker itself: a tree with each forbidden kind of import is caught, line by line."""
    root = tmp_path / "fcnseg"
    sources = {
        "data/reader.py": "from fcnseg.losses import LOSSES\nimport matplotlib.pyplot\n",
        "models/net.py": "from fcnseg.data import make_dataset\n",
        "inference/run.py": "def f():\n    from fcnseg.export import onnx\n",
        "training/loop.py": "from fcnseg import commands\n",
        "report/page.py": "import matplotlib\nmatplotlib.use('Agg')\nfrom . import html\n",
        "report/html.py": "from fcnseg.metrics import ConfusionMatrix\n",
        "cli.py": "from fcnseg import commands\n",
    }
    for name, text in sources.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert violations(root) == [
        "fcnseg.data.reader imports fcnseg.losses (data never imports losses)",
        "fcnseg.data.reader imports fcnseg.losses.LOSSES (data never imports losses)",
        "fcnseg.data.reader imports matplotlib.pyplot (matplotlib only in report)",
        "fcnseg.inference.run imports fcnseg.export (inference never imports export)",
        "fcnseg.inference.run imports fcnseg.export.onnx (inference never imports export)",
        "fcnseg.models.net imports fcnseg.data "
        "(models imports only config, errors, registry, text_files)",
        "fcnseg.models.net imports fcnseg.data.make_dataset "
        "(models imports only config, errors, registry, text_files)",
        "fcnseg.training.loop imports fcnseg.commands (training never imports commands)",
        "fcnseg.training.loop imports fcnseg.commands (only cli imports commands)",
    ]
    assert backend_choices(root) == ["fcnseg.report.page"]


@pytest.mark.parametrize("package", ["data", "inference", "metrics", "models", "losses"])
def test_light_packages_do_not_load_matplotlib(package: str):
    """Importing a reader or the Predictor must not pay for matplotlib (seconds, a backend)."""
    import subprocess
    import sys

    code = f"import sys, fcnseg.{package}; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
