"""The interactive pictures work in a real browser (issue 23).

JupyterLab (the pinned one) serves a copy of ``notebooks/`` on localhost;
headless Chromium, driven by Playwright, opens ``01_mixed_samples`` and
``06_dm_loss``, runs the cells up to the first interactive picture, moves a
slider with the keyboard as a person would and checks that the picture comes
back re-rendered: a new PNG that is not blank (all white) and, in 06, the one
mixviz draws for the sliders' values.  06's slider moves again while the rest
of the notebook runs: JupyterLab (>= 4.4, setting ``commsOverSubshells``)
sends widget messages to a kernel subshell, which ipykernel 7 runs in a thread
of its own, so the slider's callback draws while cells draw in the main
thread; that is where 06's bar chart came back blank or garbled (issue 23).
A kernel driven without a browser never sees this, which is why this test
exists.  It trains nothing (01's copy leaves out the dynamic policies, whose
models would train for minutes).

Needs Chromium (``apt-get install chromium``: /usr/bin/chromium, or
``$MIXVIZ_CHROMIUM``) and Playwright for Python (``pip install playwright``,
pinned in requirements.txt; no ``playwright install``: the test uses the
system's Chromium).  Without them the test is skipped and says so.

``MIXVIZ_SCREENSHOTS=<dir>``: the screenshots and PNGs it took are copied
there (they are always written under the test's temporary folder).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"

#: Chromium's flags: headless on a closed network (without the background-networking ones its connections are
#: refused), no sandbox (CI runs as root), no GPU.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
INSTALL = "to run it: `apt-get install chromium` and `pip install playwright` (no `playwright install`)"

SERVER_START_S = 90     # JupyterLab answers /api/status
PAGE_S = 60             # the notebook opens and its kernel is idle
CELLS_S = 120           # the cells up to the interactive one have run and the picture is there
RERENDER_S = 60         # a slider moved: a new picture replaces the old one
BLANK_STD = 2.0         # standard deviation of the grey levels (0-255) below which a picture is blank
SAME_PICTURE = 2.0      # mean absolute difference of the grey levels (0-255) below which two pictures are the same
NUM_CLASSES = 10        # 06's NUM_CLASSES

#: 01's cell that loads (or trains: minutes) the models of the dynamic policies; the copy under test leaves them
#: out, the sliders work on the static policies alone (the picture under test is the same function).
DYNAMIC_LINE = ('dynamic = [p for p, kind in mixing.available().items() if kind == "dynamic" and '
                'f"{p}+mixup_ce" in trained]')


def _chromium() -> str | None:
    path = os.environ.get("MIXVIZ_CHROMIUM")
    if path:
        return path if Path(path).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer {url} within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser_tools():
    """(playwright's sync_playwright, path of Chromium), or a skip that says how to install them."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip(f"no Chromium found (chromium, chromium-browser, google-chrome or $MIXVIZ_CHROMIUM); {INSTALL}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"playwright (Python) is not installed; {INSTALL}")
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed: make setup installs it")
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed: make setup installs it")
    return sync_playwright, chromium


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser_tools):
    """JupyterLab on a free localhost port with a token, serving a copy of 01 and 06, with the environment of
    `make lab` (MIXVIZ_PRESET=quick, a run store: here an empty one). Yields (base URL, token, shot folder)."""
    import nbformat

    base = tmp_path_factory.mktemp("browser")
    root, runs, shots, home = base / "notebooks", base / "runs", base / "shots", base / "home"
    for folder in (root, runs, shots, home / "config" / "labconfig"):
        folder.mkdir(parents=True)
    # no "get notified about Jupyter news?" toast over the notebook
    (home / "config" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    nb = nbformat.read(NB_DIR / "01_mixed_samples.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and DYNAMIC_LINE in c.source)
    cell.source = cell.source.replace(DYNAMIC_LINE, "dynamic = []  # browser test: no trained model needed")
    nbformat.write(nb, root / "01_mixed_samples.ipynb")
    shutil.copy(NB_DIR / "06_dm_loss.ipynb", root / "06_dm_loss.ipynb")

    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ, MIXVIZ_PRESET="quick", MIXVIZ_RUNS=str(runs), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_DATA_DIR=str(home / "data"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.pop("MPLBACKEND", None)  # as `make lab` from a plain shell; the notebooks turn on the inline backend
    env.pop("JUPYTER_PATH", None)
    log = base / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]  # localhost only: nothing asks PyPI or the news feed
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{url}/api/status?token={token}", proc, log)
        yield url, token, shots
    finally:
        _stop(proc)
        keep = os.environ.get("MIXVIZ_SCREENSHOTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            for shot in shots.iterdir():
                shutil.copy(shot, Path(keep) / shot.name)


# --------------------------------------------------------------------------- driving the page


def _open_notebook(page, url: str, token: str, name: str) -> None:
    """Open ``name`` in a fresh workspace and wait until its kernel is idle."""
    page.goto(f"{url}/lab/tree/{name}?token={token}&reset", timeout=PAGE_S * 1000)
    page.locator(".jp-StatusBar-TextItem", has_text="| Idle").wait_for(timeout=PAGE_S * 1000)


def _run_up_to(page, cell, timeout_s: float) -> None:
    """Run every cell above ``cell`` and ``cell`` itself (Run menu: Run All Above Selected Cell, then Shift+Enter),
    and wait until ``cell`` has finished (an execution count in its prompt) and shows a picture."""
    from playwright.sync_api import expect

    prompt = cell.locator(".jp-InputArea-prompt")
    prompt.click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Above Selected Cell").click()
    prompt.click()
    page.keyboard.press("Shift+Enter")
    expect(prompt).to_have_text(re.compile(r"\[\d+\]"), timeout=timeout_s * 1000)
    cell.locator(".widget-output img").first.wait_for(timeout=RERENDER_S * 1000)


def _picture(cell) -> bytes:
    """The PNG of the picture in ``cell``'s interactive output (the src of its <img>, base64); b"" when it shows
    none at the moment."""
    pictures = cell.locator(".widget-output img")
    if pictures.count() == 0:
        return b""
    try:
        src = pictures.first.get_attribute("src", timeout=5000) or ""
    except Exception:  # replaced while being read (playwright's TimeoutError)
        return b""
    assert src.startswith("data:image/png;base64,"), f"the picture is not an inline PNG: {src[:60]!r}"
    return base64.b64decode(src.split(",", 1)[1])


def _grey_std(png: bytes) -> float:
    """Standard deviation of the picture's grey levels (0-255): near 0 for a blank (uniform) picture."""
    import numpy as np
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float).std())


def _move_slider(page, cell, description: str, presses: int = 2) -> None:
    """Focus the handle of the slider called ``description`` and press the right arrow key ``presses`` times."""
    handle = cell.locator(".widget-slider", has_text=description).locator(".noUi-handle").first
    handle.focus()
    for _ in range(presses):
        page.keyboard.press("ArrowRight")


def _wait_for_new_picture(page, cell, before: bytes, timeout_s: float) -> bytes:
    """The first picture in ``cell`` whose bytes differ from ``before``, once the picture has stopped changing
    for a moment (the update has finished); else what it shows after ``timeout_s`` (``before``, or b"": none)."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = before, None
    while time.monotonic() < deadline:
        now = _picture(cell)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif last and last != before and stable_since is not None and time.monotonic() - stable_since > 1.5:
            return last
        page.wait_for_timeout(250)
    return last


def _check_picture(png: bytes, before: bytes, what: str, path: Path, expected: bytes | None = None) -> None:
    """``png`` is there, differs from ``before``, is not blank and (given ``expected``) is that picture."""
    path.write_bytes(png)
    assert png, f"{what}: no picture came back within {RERENDER_S} s"
    assert png != before, f"{what}: the picture did not change after the slider moved (saved: {path})"
    std = _grey_std(png)
    assert std > BLANK_STD, f"{what}: the picture came back blank (grey-level std {std:.2f}; saved: {path})"
    if expected is not None:
        path.with_name(path.stem + "-expected.png").write_bytes(expected)
        difference = _difference(png, expected)
        assert difference < SAME_PICTURE, (f"{what}: the picture is not the one mixviz draws for these values "
                                           f"(grey-level difference {difference}; saved: {path} and its -expected)")


def _difference(png: bytes, expected: bytes) -> float:
    """Mean absolute difference of the grey levels of two pictures (inf when their sizes differ)."""
    import numpy as np
    from PIL import Image

    a, b = (np.asarray(Image.open(io.BytesIO(p)).convert("L"), dtype=float) for p in (png, expected))
    return float(np.abs(a - b).mean()) if a.shape == b.shape else float("inf")


def _slider_values(cell) -> dict[str, float]:
    """The value of each slider of ``cell``'s interactive picture, by its description."""
    values = {}
    sliders = cell.locator(".widget-slider")
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        name = slider.locator(".widget-label").inner_text().strip()
        values[name] = float(slider.locator(".noUi-handle").first.get_attribute("aria-valuenow"))
    return values


def _expected_bars(cell) -> bytes:
    """The picture 06's first interactive cell must show for its sliders' values (mode 'both'), drawn here."""
    import matplotlib.pyplot as plt

    from mixviz import viz
    from mixviz.analysis import dm

    v = _slider_values(cell)
    fig = viz.gradient_bars(dm.loss_table(v["λ"], eta=v["η"], mode="both", lam_power=v["λ power"], z_a=v["z_a"],
                                          z_b=v["z_b"], z_rest=v["z_rest"], num_classes=NUM_CLASSES))
    try:
        return viz.png_bytes(fig)
    finally:
        plt.close(fig)


@pytest.fixture(scope="module")
def page(lab, browser_tools):
    """A page of headless Chromium (a new, empty profile; the flags of :data:`CHROMIUM_FLAGS`)."""
    sync_playwright, chromium = browser_tools
    url, token, shots = lab
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(shots.parent / "chromium-profile"), executable_path=chromium, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1400}, timeout=PAGE_S * 1000)
        context.set_default_timeout(PAGE_S * 1000)
        try:
            yield context.new_page()
        finally:
            context.close()


def _first_move(lab, page, notebook: str, marker: str, tag: str):
    """Open ``notebook``, run it up to the interactive cell holding ``marker``, check its first picture is not
    blank, move the λ slider and wait for the new picture: ``(cell, before, after, screenshots folder)``."""
    url, token, shots = lab
    _open_notebook(page, url, token, notebook)
    cell = page.locator(".jp-CodeCell", has_text=marker)
    _run_up_to(page, cell, CELLS_S)
    before = _picture(cell)
    (shots / f"{tag}-before.png").write_bytes(before)
    assert _grey_std(before) > BLANK_STD, f"{tag}: the first picture is blank"
    _move_slider(page, cell, "λ")
    after = _wait_for_new_picture(page, cell, before, RERENDER_S)
    cell.locator(".widget-interact").screenshot(path=str(shots / f"browser-{tag}.png"))
    return cell, before, after, shots


@pytest.mark.slow
def test_01_slider_redraws_the_gallery(lab, page):
    cell, before, after, shots = _first_move(lab, page, "01_mixed_samples.ipynb", "widgets.interact(show, policy=",
                                             "01")
    _check_picture(after, before, "01 (λ moved)", shots / "01-after.png")
    assert not any((shots.parent / "runs").iterdir()), "the copy of 01 under test must not train a run"


@pytest.mark.slow
def test_06_sliders_redraw_the_gradient_bars(lab, page):
    """Once with the kernel idle, then while the rest of the notebook runs (cells drawing in the kernel's main
    thread while the slider's callback runs in a subshell's thread): every picture must come back, drawn as
    mixviz draws it for the sliders' values, and the cells that ran meanwhile keep their own pictures."""
    import matplotlib.pyplot as plt
    from playwright.sync_api import expect

    from mixviz import viz
    from mixviz.analysis import dm

    cell, before, after, shots = _first_move(lab, page, "06_dm_loss.ipynb", "show_prediction, lam=", "06")
    _check_picture(after, before, "06 (λ moved, kernel idle)", shots / "06-after-idle.png", _expected_bars(cell))

    # the rest of the notebook (sections 2 and 3: pictures drawn in the main thread), and the slider meanwhile
    page.locator(".jp-Cell", has_text="Static version: a 50/50 mix").locator(".jp-InputArea-prompt").click()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run Selected Cell and All Below").click()
    last = page.locator(".jp-CodeCell", has_text="trace = dm.sgd_trace(mixed")
    done = re.compile(r"\[\d+\]")
    for move in range(4):
        before = after
        # λ: a widget whose kernel side has answered once is served by the subshell from then on (its first
        # message goes to the main shell, which is busy with the cells until they finish)
        _move_slider(page, cell, "λ")
        after = _wait_for_new_picture(page, cell, before, RERENDER_S)
        _check_picture(after, before, f"06 (λ moved while cells run, move {move + 1})",
                       shots / f"06-after-busy-{move + 1}.png", _expected_bars(cell))
        if done.fullmatch(last.locator(".jp-InputArea-prompt").inner_text().strip().rstrip(":")):
            break
    expect(last.locator(".jp-InputArea-prompt")).to_have_text(done, timeout=CELLS_S * 1000)

    # the static pictures drawn meanwhile: one each, drawn; the gradient bars as mixviz draws them here, the heat map
    # of the size it has here (its contours and palette vary a little between processes); the trace trains: seconds
    bars = viz.gradient_bars(dm.loss_table(0.5, eta=1.0, num_classes=NUM_CLASSES, z_a=3.0))
    heat = viz.loss_landscape(dm.loss_grid(0.7, eta=1.0, num_classes=NUM_CLASSES))
    expected_bars, expected_heat = viz.png_bytes(bars), viz.png_bytes(heat)
    plt.close(bars)
    plt.close(heat)
    for name, text in (("bars", "fig = viz.gradient_bars(found_a)"),
                       ("heat-map", "fig = viz.loss_landscape(static_grid)"),
                       ("trace", "fig = viz.sgd_trace_plot(trace)")):
        static = page.locator(".jp-CodeCell", has_text=text)
        static.scroll_into_view_if_needed()
        pictures = static.locator(".jp-OutputArea-output img")
        pngs = [base64.b64decode((pictures.nth(i).get_attribute("src") or ",").split(",", 1)[1])
                for i in range(pictures.count())]
        for i, png in enumerate(pngs):
            (shots / f"06-static-{name}-{i + 1}.png").write_bytes(png)
        assert len(pngs) == 1, (f"06: the cell with {text!r} shows {len(pngs)} pictures, not 1 (a picture of the "
                                f"slider's callback, drawn in another thread, went to this cell; saved in {shots})")
        assert _grey_std(pngs[0]) > BLANK_STD, f"06: {text!r} drew a blank picture (saved in {shots})"
        if name == "bars":
            difference = _difference(pngs[0], expected_bars)
            assert difference < SAME_PICTURE, (f"06: {text!r} shows another picture than mixviz draws "
                                               f"(grey-level difference {difference}; saved in {shots})")
        if name == "heat-map":
            assert _difference(pngs[0], expected_heat) < float("inf"), (
                f"06: {text!r} shows a picture of another size than mixviz draws (half drawn; saved in {shots})")
    assert not any((shots.parent / "runs").iterdir()), "06 must not train a run"
