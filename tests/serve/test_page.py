"""The page of `fcnseg serve` in a real headless Chromium (Debian's chromium and chromium-driver,
driven by selenium), against the app served by uvicorn on loopback in this process: an image
is chosen, the overlay appears with the colours of the served mask, the legend names the
classes with their areas, the opacity slider works, instances are filled and outlined as
`fcnseg predict` draws them; a screenshot is written to the test's folder, and also to the path
in the environment variable FCNSEG_SCREENSHOT when it is set (README's picture of the page):

    FCNSEG_SCREENSHOT=docs/serve_page.png FCNSEG_SERVE_CHECKPOINT=runs/demo/best.pt \\
        .venv/bin/python -m pytest tests/serve/test_page.py

(FCNSEG_SERVE_CHECKPOINT: a trained semantic checkpoint to show instead of the untrained one.)
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import fcnseg
from fcnseg.data.synthetic import generate_sample
from fcnseg.inference.instance_pictures import id_contours, instance_colours
from fcnseg.models.instances import Instances
from tests.inference.test_instances import write_instance_checkpoint
from tests.serve.conftest import CLASS_NAMES, write_semantic_checkpoint

REASON = "the page test needs the serve extra and selenium: pip install -e '.[serve,dev]'"
for module in ("fastapi", "uvicorn", "python_multipart", "selenium"):
    pytest.importorskip(module, reason=REASON)
CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "no headless browser: install Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

import uvicorn  # noqa: E402  (after the skips)
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from fcnseg.serve.app import create_app  # noqa: E402
from fcnseg.serve.model import served_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
# Chromium offline: no network lookups at start (it would wait on them), no sandbox (root).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,860",
    "--force-device-scale-factor=1",
)
PAGE_SIZE = (120, 164)  # (H, W): the demo's images


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = CHROMIUM
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # selenium-manager never downloads a driver
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@contextmanager
def running(app: Any) -> Iterator[str]:
    """`app` served by uvicorn on a free loopback port in a thread; its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # websockets' own, at import
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


def upload(browser: Any, url: str, image: Path) -> None:
    """Open the page, choose `image` in its file input, wait for the result."""
    browser.get(url)
    WebDriverWait(browser, 10).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, "#legend tbody tr")
    )
    browser.find_element(By.ID, "file").send_keys(str(image))
    WebDriverWait(browser, 15).until(
        lambda driver: (
            driver.find_element(By.ID, "view").get_attribute("data-state") in ("done", "error")
        )
    )
    status = browser.find_element(By.ID, "status").text
    assert browser.find_element(By.ID, "view").get_attribute("data-state") == "done", status


def canvas_pixels(browser: Any, canvas_id: str) -> np.ndarray:
    """(H, W, 4) uint8 RGBA of one of the page's canvases."""
    width, height, values = browser.execute_script(
        "const canvas = document.getElementById(arguments[0]);"
        "const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);"
        "return [canvas.width, canvas.height, Array.from(data.data)];",
        canvas_id,
    )
    return np.asarray(values, dtype=np.uint8).reshape(height, width, 4)


def screenshot(browser: Any, folder: Path) -> None:
    browser.save_screenshot(str(folder / "serve_page.png"))
    width, height = Image.open(folder / "serve_page.png").size  # the viewport
    assert width == 1280 and height > 600
    target = os.environ.get("FCNSEG_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "serve_page.png", target)


def test_an_uploaded_image_gets_its_overlay_legend_and_areas(browser: Any, tmp_path: Path):
    model_path = Path(os.environ.get("FCNSEG_SERVE_CHECKPOINT") or "")
    if not model_path.is_file():
        model_path = write_semantic_checkpoint(tmp_path / "best.pt")
    predictor = fcnseg.load(model_path, device="cpu")
    image, _ = generate_sample(7, 3, PAGE_SIZE)
    Image.fromarray(image).save(tmp_path / "shapes.png")
    with running(create_app(served_model(predictor, model_path))) as url:
        upload(browser, url, tmp_path / "shapes.png")
        screenshot(browser, tmp_path)
        overlay = canvas_pixels(browser, "overlay")
        rows = browser.find_elements(By.CSS_SELECTOR, "#legend tbody tr")
        legend = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]
        link = browser.find_element(By.ID, "download")
        href, download = link.get_attribute("href"), link.get_attribute("download")
        slider = browser.find_element(By.ID, "opacity")
        slider.send_keys(Keys.HOME)  # the keyboard, as a person would: to 0 %
        hidden = browser.find_element(By.ID, "overlay").value_of_css_property("opacity")
    labels = predictor.predict_image(image)  # (H, W), what the server predicted
    assert overlay.shape == (*PAGE_SIZE, 4)
    assert np.array_equal(overlay[..., :3], predictor.palette[labels])  # the mask's colours
    assert (overlay[..., 3] == 255).all()
    names = list(predictor.class_names)
    assert [row[1] for row in legend] == names
    if names == CLASS_NAMES:  # the tiny model: areas checked to the pixel
        counts = np.bincount(labels.ravel(), minlength=len(names))
        assert [int(row[2].replace(",", "")) for row in legend] == counts.tolist()
        percents = [float(row[3]) for row in legend]
        assert percents == pytest.approx((100 * counts / labels.size).tolist(), abs=0.006)
    assert href.startswith("blob:") and download == "shapes_mask.png"
    assert float(hidden) == 0.0


def hand_instances(height: int, width: int) -> Instances:
    """Two touching instances and one alone at the image's corner."""
    masks = torch.zeros(3, height, width, dtype=torch.bool)
    masks[0, 4:20, 6:26] = True
    masks[1, 8:30, 26:50] = True  # touches the first along column 25/26
    masks[2, 36:, 52:] = True
    return Instances(masks, torch.tensor([1, 2, 1]), torch.tensor([0.93, 0.61, 0.35]))


def test_instances_are_filled_outlined_and_scored(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The page decodes each instance's RLE itself: its fill and outlines must be the ID map's
    (id_contours, instance_colours: `fcnseg predict`'s drawing)."""
    model_path = write_instance_checkpoint(tmp_path / "instances.pt")
    predictor = fcnseg.load(model_path, device="cpu")
    height, width = 45, 61
    monkeypatch.setattr(predictor, "predict_image", lambda image: hand_instances(height, width))
    Image.fromarray(generate_sample(1, 1, (height, width))[0]).save(tmp_path / "cells.png")
    with running(create_app(served_model(predictor, model_path))) as url:
        upload(browser, url, tmp_path / "cells.png")
        browser.save_screenshot(str(tmp_path / "instances_page.png"))  # to look at on failure
        fill, outlines = canvas_pixels(browser, "overlay"), canvas_pixels(browser, "outlines")
        scores = [label.text for label in browser.find_elements(By.CSS_SELECTOR, ".score")]
        listed = browser.find_elements(By.CSS_SELECTOR, "#instances li")
    ids = np.zeros((height, width), dtype=np.int64)
    for index, mask in enumerate(hand_instances(height, width).masks.numpy(), start=1):
        ids[mask & (ids == 0)] = index  # the higher score keeps shared pixels; none here
    colours = instance_colours(3)
    assert np.array_equal(fill[..., :3], colours[ids]) and np.array_equal(
        fill[..., 3], np.where(ids > 0, 255, 0)
    )
    edges = id_contours(ids)
    assert np.array_equal(outlines[..., 3] > 0, edges)
    assert np.array_equal(outlines[edges][:, :3], colours[ids[edges]])
    names = predictor.class_names
    assert scores == [f"{names[1]} 0.93", f"{names[2]} 0.61", f"{names[1]} 0.35"]
    assert len(listed) == 3
