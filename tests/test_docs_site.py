"""The documentation site (mkdocs.yml, docs/): it builds in strict mode, offline, and a broken
link, anchor, repository path or command name fails the build.

Skipped where the `docs` extra (mkdocs, mkdocs-material, mkdocstrings[python]) is not installed.
A build takes a few seconds: griffe reads the API pages' modules without importing them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings_handlers.python")
COMMANDS = ("demo", "train", "evaluate", "predict", "export", "inspect", "convert", "serve")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package of a dotted name is missing
        return False


pytestmark = pytest.mark.skipif(
    not all(_installed(module) for module in DOCS_PACKAGES),
    reason="the docs extra is not installed: pip install -c constraints.txt -e '.[docs]'",
)


def _load_hooks():  # docs/hooks.py is no package module: load it from its file
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of `config` into `site`, as `make docs` runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's banner about MkDocs 2.0
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs") / "site"
    result = build(ROOT / "mkdocs.yml", folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def test_every_page_of_the_nav_is_built(site: Path) -> None:
    for page in ("index", "config", "data", "losses", "models", "deployment", "reliability"):
        assert (site / f"{page}.html").is_file(), page
    for page in ("tasks/semantic", "tasks/instance", "models/fcn", "models/fcis", "api/losses"):
        assert (site / f"{page}.html").is_file(), page
    # Links end in .html (use_directory_urls: false), so the site also works opened from disk.
    assert 'href="tasks/semantic.html"' in _text(site / "index.html")


def test_command_pages_show_the_help_of_the_installed_code(site: Path) -> None:
    for command in COMMANDS:
        page = _text(site / "commands" / f"{command}.html")
        assert f"usage: fcnseg {command}" in page, command
        assert "fcnseg-help:" not in page, command  # the marker was replaced
    assert "--max-drop" in _text(site / "commands" / "export.html")


def test_api_pages_are_generated_from_the_docstrings(site: Path) -> None:
    losses = _text(site / "api" / "losses.html")
    assert "LovaszSoftmaxLoss" in losses
    assert "a convex, tight surrogate of 1 - IoU" in losses  # the class docstring's words
    deeplab = _text(site / "models" / "deeplab.html")
    assert "Image pooling has batch" in deeplab  # the page's own words
    assert "Atrous Spatial Pyramid Pooling" in deeplab  # deeplab.py's module docstring


def test_nothing_is_fetched_from_another_host(site: Path) -> None:
    """No font, script, style, picture or frame of another host: the site reads offline."""
    remote = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=\"(?:https?:)?//")
    for page in site.rglob("*.html"):
        text = _text(page)
        assert not remote.search(text), page
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, page
        assert 'class="mermaid"' not in text, page  # Material would fetch mermaid from unpkg
    for sheet in site.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*['\"]?(?:https?:)?//", _text(sheet)), sheet


def test_a_broken_link_anchor_path_or_command_fails_the_build(tmp_path: Path) -> None:
    """The same site with one mistake of each kind: strict mode names all four and fails."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "src").symlink_to(ROOT / "src", target_is_directory=True)
    page = tmp_path / "docs" / "losses.md"
    page.write_text(
        _text(page)
        + "\n[gone](no-such-page.md) [key](config.md#no-such-key) [file](../src/no_such.py)\n"
        + "\n<!-- fcnseg-help: no-such-command -->\n",
        encoding="utf-8",
    )
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for mistake in ("no-such-page.md", "no-such-key", "no_such.py", "no-such-command"):
        assert mistake in output, (mistake, output)


def test_placeholders_in_docstrings_stay_text() -> None:
    hooks = _load_hooks()
    html = "<p>Write <root>/<split>/images<br>and <code>x</code></p>"
    assert hooks.escape_placeholders(html) == (
        "<p>Write &lt;root&gt;/&lt;split&gt;/images<br>and <code>x</code></p>"
    )


def test_command_help_is_the_parser_s() -> None:
    hooks = _load_hooks()
    assert hooks.command_help("no-such-command") is None
    text = hooks.command_help("models")
    assert text.startswith("usage: fcnseg models [-h]")
    assert all(len(line) <= int(hooks.HELP_WIDTH) for line in text.splitlines())
