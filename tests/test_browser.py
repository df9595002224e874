"""A real JupyterLab in headless Chromium: run the notebooks, look, hover, recolour.

Needs Debian's chromium (.ci/run installs it) and Python's playwright (never
`playwright install`: the browser is the system one). Screenshots go to test-output/browser/.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ROOT / "test-output" / "browser"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium for the browser tests (see .ci/run)")
    pytest.skip("Debian's chromium is not installed here (apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GENERATION_CELLS = [  # a generation's views with the tiny model: seconds, not the notebook's minute
    """
import lightlens
from lightlens import sampling
from lightlens.widgets import LiveGeneration
lm = lightlens.load(MODEL)
g = lm.generate("Hello world", max_new_tokens=12, sampler=sampling.Sampler.from_options(top_p=0.9), seed=0)
g""",
    "fig = g.plot()",
    'view = LiveGeneration(lm, "Hello world", max_new_tokens=8, seed=0)\nview',
    "streamed = view.run()",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, gpt2_dir):
    """JupyterLab on 127.0.0.1 serving a copy of the notebooks (the repo's are never touched)."""
    import nbformat

    root = tmp_path_factory.mktemp("lab")
    cells = [nbformat.v4.new_code_cell(c.strip().replace("MODEL", repr(str(gpt2_dir)))) for c in GENERATION_CELLS]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "generation_views.ipynb")
    for name in ("quickstart.ipynb", "explorer.ipynb"):  # copies without outputs: what shows is fresh
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, root / name)
    # Render every cell (no windowing: off-screen prompts must update too) and ask for no news.
    settings = root / ".jupyter" / "lab" / "user-settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = _free_port(), "lightlens-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_DATA_DIR": str(root / ".data")}
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start within 60 s")
    yield base, token
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def open_and_run(browser, lab, name: str):
    """Open a notebook, wait for an idle kernel, Run All Cells, wait until done."""
    base, token = lab
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    workspace = name.replace(".", "-")  # a workspace of its own: no other notebook reopens beside it
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{name}?token={token}", wait_until="domcontentloaded")
    idle = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator[data-status='idle']")
    idle.wait_for(timeout=120_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    done = ("() => { const p = [...document.querySelectorAll("
            "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];"
            " return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }")
    page.wait_for_timeout(3000)  # let the kernel connection settle after the first idle
    for attempt in range(3):
        # A Run All sent while the kernel connection is still settling can be dropped (the
        # prompts stay [ ]); then it is sent again.
        page.keyboard.press("Escape")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:
            page.wait_for_function(done, timeout=90_000)
            idle.wait_for(timeout=120_000)
            break
        except Exception:
            page.screenshot(path=str(SHOTS / f"retry-{attempt}-{name}.png"), full_page=True)
            if attempt == 2:
                raise
    return page, errors


def hover(page, token, expect: str) -> str:
    """Move the mouse over ``token`` and return its tooltip (the ``::after`` content); the page may
    still be laying out plots, so aim again until the tooltip shows ``expect``."""
    tip = ""
    for _ in range(5):
        token.scroll_into_view_if_needed()
        box = token.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_timeout(300)
        tip = token.evaluate("e => getComputedStyle(e, '::after').content")
        if expect in tip:
            break
    return tip


def test_quickstart_in_jupyterlab(browser, lab):
    page, errors = open_and_run(browser, lab, "quickstart.ipynb")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tokens = page.locator(".jp-OutputArea-output .ll-t[style*='background']")
    assert tokens.count() > 20  # the heatmap is there, with coloured tokens
    colours = set(tokens.evaluate_all("els => els.slice(0, 40).map(e => getComputedStyle(e).backgroundColor)"))
    assert len(colours) > 3
    first = tokens.nth(5)
    before = first.evaluate("e => getComputedStyle(e, '::after').content")
    tip = hover(page, first, "logprob")
    assert before in ("none", "normal", "") and "logprob" in tip and "rank" in tip  # hover shows details
    inside = first.evaluate(
        "e => { const s = getComputedStyle(e, '::after'); const t = e.getBoundingClientRect();"
        " const out = e.closest('.jp-OutputArea-output').getBoundingClientRect();"
        " return [parseFloat(s.height), t.top + parseFloat(s.top) + parseFloat(s.height) <= out.bottom + 1]; }")
    assert inside[0] > 60 and inside[1]  # the whole tooltip lies inside the output area: nothing clipped
    page.screenshot(path=str(SHOTS / "quickstart-hover.png"))
    assert page.locator(".jp-OutputArea-output img").count() >= 3  # the plots are drawn
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    page.screenshot(path=str(SHOTS / "quickstart.png"), full_page=True)
    assert not errors, errors
    page.context.close()


def test_explorer_in_jupyterlab(browser, lab):
    page, errors = open_and_run(browser, lab, "explorer.ipynb")
    SHOTS.mkdir(parents=True, exist_ok=True)
    heat = page.locator(".widget-html .ll-text").first
    try:
        heat.wait_for(timeout=60_000)
    finally:
        page.screenshot(path=str(SHOTS / "explorer-first.png"), full_page=True)
    assert page.locator(".widget-html .ll-t[style*='background']").count() > 10
    assert page.locator(".widget-html img[alt='logprob and entropy plots']").count() == 1
    before = heat.inner_html()
    page.screenshot(path=str(SHOTS / "explorer.png"), full_page=True)
    page.locator(".widget-dropdown", has_text="metric").locator("select").select_option("rank")
    page.wait_for_function("b => document.querySelector('.widget-html .ll-text').innerHTML !== b", arg=before,
                           timeout=30_000)
    assert "top 1000" in page.locator(".widget-html .ll-card").first.inner_html()  # recoloured by rank
    page.screenshot(path=str(SHOTS / "explorer-rank.png"), full_page=True)
    assert not errors, errors
    page.context.close()


def test_generation_views_in_jupyterlab(browser, lab):
    page, errors = open_and_run(browser, lab, "generation_views.ipynb")
    out = page.locator(".jp-OutputArea-output").first
    marker = out.locator(".ll-pe")
    assert marker.count() == 1 and "generated" in marker.evaluate("e => getComputedStyle(e, '::before').content")
    assert out.locator(".ll-pr").first.evaluate("e => getComputedStyle(e).fontStyle") == "italic"
    tip = hover(page, out.locator(".ll-t:not(.ll-pr)").nth(2), "sampled")  # a generated token
    assert "sampled p" in tip and "kept" in tip and "top alternatives" in tip
    page.screenshot(path=str(SHOTS / "generation-hover.png"))
    assert page.locator(".jp-OutputArea-output img").count() >= 1  # the step plots
    live = page.locator(".widget-html .ll-card")
    live.wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('.widget-html .ll-card').innerHTML.includes('finish <b>')",
                           timeout=60_000)  # the live view ended as the generation's heatmap
    assert live.locator(".ll-pe").count() == 1 and live.locator(".ll-t").count() >= 9
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    page.screenshot(path=str(SHOTS / "generation.png"), full_page=True)
    assert not errors, errors
    page.context.close()
