"""DreamDojo's panels in the web UI, end to end: a real server on 127.0.0.1 with the tiny
model, a tiny LeRobot dataset, headless Chromium. A sample is picked on the generate
page, rolled out, and its session shows the ground truth and the prediction under one
control, the action chart, the metrics and the chunks; "next chunk" from the dataset makes
a session one chunk longer. Screenshots go to ``outputs/ui-screenshots/dd-*.png``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")
pytest.importorskip("uvicorn")
# The core's browser-test helpers (its tests/ folder on the path); they skip without Chromium.
ui = pytest.importorskip("test_ui_browser", reason="the core's tests/ folder is not on the path")

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

from arc_fabric_core.dispatch.plugins import Plugins  # noqa: E402

WAIT_MS = 120_000  # the tiny model's first load builds its checkpoint


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(ui.CHROMIUM), headless=True, args=ui.BROWSER_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def plugins() -> Plugins:
    from arc_dreamdojo import plugin

    plugins = Plugins(load_entrypoints=False)
    plugins.register(plugin, name="dreamdojo")
    return plugins


@pytest.fixture
def server(tmp_path: Path, plugins: Plugins) -> Iterator[Any]:
    with ui.serve(tmp_path, plugins) as running:
        yield running


@pytest.fixture
def page(browser: Browser, server: Any) -> Iterator[Page]:
    """A page closed before its server stops (else its event stream reconnects in vain)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg: Any) -> None:
        if msg.type in ("error", "warning") and "Failed to load resource" not in msg.text:
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("console", on_console)
    yield page
    context.close()
    assert not problems, problems


def wait_ready(page: Page, testid: str) -> None:
    page.wait_for_function(
        """id => { const v = document.querySelector(`[data-testid="${id}"]`);
                   return v && v.readyState >= 2 && v.duration > 0 && v.videoWidth > 0; }""",
        arg=testid,
    )


def times(page: Page) -> list[float]:
    return page.evaluate(
        """() => ['dd-truth-video', 'dd-pred-video'].map(
               id => document.querySelector(`[data-testid="${id}"]`).currentTime)"""
    )


def test_pick_a_sample_roll_it_out_compare_and_act(page: Page, server: Any, tmp_path: Path) -> None:
    from arc_dreamdojo.tiny_dataset import build_tiny_dataset

    expect.set_options(timeout=WAIT_MS)
    # Episodes long enough that every window has the rows of one more chunk (for act).
    dataset = str(Path(build_tiny_dataset(tmp_path / "dataset", frames=200)).resolve())
    ui.open_ui(page, server)
    page.locator('[data-testid="model-card"][data-model="dreamdojo"]').click()
    page.locator("details.advanced > summary").click()
    page.get_by_test_id("variant-select").select_option("tiny")
    page.get_by_test_id("param-steps").fill("2")

    # The sample picker: a path, then task, episode, window; the pick sets the parameters.
    picker = page.get_by_test_id("dd-sample-picker")
    expect(picker).to_be_visible()
    page.get_by_test_id("dd-dataset-path").fill(dataset)
    page.get_by_test_id("dd-dataset-load").click()
    expect(page.get_by_test_id("dd-dataset-status")).to_contain_text("evaluation window")
    tasks = page.get_by_test_id("dd-task").locator("option")
    assert tasks.count() >= 1
    page.get_by_test_id("dd-task").select_option(index=tasks.count() - 1)
    page.get_by_test_id("dd-episode").select_option(index=0)
    windows = page.get_by_test_id("dd-window").locator("option")
    assert windows.count() >= 1
    page.get_by_test_id("dd-window").select_option(index=0)
    sample = page.get_by_test_id("dd-window").input_value()
    expect(page.get_by_test_id("param-dataset")).to_have_value(dataset)
    expect(page.get_by_test_id("param-sample")).to_have_value(sample)
    page.wait_for_function(
        "() => { const i = document.querySelector('[data-testid=\"dd-first-frame\"]'); "
        "return i && i.complete && i.naturalWidth === 640; }"
    )
    expect(page.get_by_test_id("dd-sample-caption")).to_contain_text(f"sample {sample}")
    top(page)
    ui.shot(page, "dd-01-generate-sample-picker")

    page.get_by_test_id("generate-button").click()
    output = page.get_by_test_id("output")
    expect(output.get_by_test_id("job-state")).to_have_text("succeeded")
    output.get_by_test_id("open-session").click()

    # The session: both videos, one control; the chart, the metrics, the chunks.
    panel = page.get_by_test_id("dd-session-panel")
    expect(panel).to_be_visible()
    expect(panel.get_by_test_id("dd-chunk")).to_have_count(2)
    expect(panel.locator(".dd-chunk.done")).to_have_count(2)
    wait_ready(page, "dd-truth-video")
    wait_ready(page, "dd-pred-video")
    page.get_by_test_id("dd-play").click()
    page.wait_for_function(
        """() => ['dd-truth-video', 'dd-pred-video'].every(id => {
               const v = document.querySelector(`[data-testid="${id}"]`);
               return !v.paused && v.currentTime > 0.3; })"""
    )
    page.get_by_test_id("dd-play").click()  # pause both
    page.eval_on_selector('[data-testid="dd-seek"]', "s => { s.value = '13'; s.dispatchEvent(new Event('input')); }")
    page.wait_for_function(
        """() => ['dd-truth-video', 'dd-pred-video'].every(id => {
               const v = document.querySelector(`[data-testid="${id}"]`); return v.paused && !v.seeking; })"""
    )
    truth_t, pred_t = times(page)
    assert abs(truth_t - pred_t) < 0.01 and abs(pred_t - 13.5 / 10) < 0.01, (truth_t, pred_t)
    expect(page.get_by_test_id("dd-frame")).to_have_text("frame 13 / 24 · chunk 1")
    expect(panel.get_by_test_id("dd-chart-bar")).to_have_count(2)
    metrics = panel.get_by_test_id("dd-metrics")
    expect(metrics).to_contain_text(_metrics_text())
    expect(panel.get_by_test_id("dd-preview")).to_have_count(2)
    top(page)
    ui.shot(page, "dd-02-session-panel")

    # Next chunk from the dataset: a new session, one chunk longer.
    first = page.get_by_test_id("session-page").get_attribute("data-session-id")
    page.get_by_test_id("dd-next-dataset").click()
    page.get_by_test_id("dd-next-open").click()
    expect(page.get_by_test_id("session-page")).not_to_have_attribute("data-session-id", first or "")
    expect(page.get_by_test_id("session-status")).to_have_text("completed")
    panel = page.get_by_test_id("dd-session-panel")
    expect(panel.get_by_test_id("dd-chunk")).to_have_count(3)
    expect(panel.locator(".dd-chunk.done")).to_have_count(3)
    expect(page.get_by_test_id("session-op")).to_contain_text("extend of")  # act is an extension by one chunk
    expect(panel.get_by_test_id("dd-chart-bar")).to_have_count(3)
    wait_ready(page, "dd-truth-video")
    wait_ready(page, "dd-pred-video")
    assert page.evaluate(
        "() => ['dd-truth-video', 'dd-pred-video'].map(id => "
        'Math.round(document.querySelector(`[data-testid="${id}"]`).duration * 10))'
    ) == [37, 37]
    expect(panel.get_by_test_id("dd-metrics")).to_contain_text(_metrics_text())
    top(page)
    ui.shot(page, "dd-03-next-chunk-session")


def top(page: Page) -> None:
    """Scrolled to the top: a full-page shot of a scrolled page draws the sticky header mid-page."""
    page.evaluate("() => window.scrollTo(0, 0)")


def _metrics_text() -> str:
    """What the metrics box shows: the scores once the metrics module is there."""
    try:
        import arc_dreamdojo.metrics  # noqa: F401
    except ImportError:
        return "metrics not available"
    return "PSNR"
