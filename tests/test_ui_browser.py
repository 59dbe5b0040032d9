"""The web UI, end to end: a real server on 127.0.0.1, driven by headless Chromium.

Screenshots of every stage are kept in ``outputs/ui-screenshots/``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

import httpx
from playwright.sync_api import Browser, Page, expect, sync_playwright

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.server.app import create_app
from arc_fabric_core.server.orchestrator import Settings
from arc_fabric_core.testing.server import running_server

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the browser tests need Chromium at {CHROMIUM}", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "outputs" / "ui-screenshots"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


class StepGate:
    """A plugin that owns no model: it wraps every denoising step and, after
    ``hold_after(n)``, lets n more steps run and holds the next one until ``release()``.
    It makes "a job caught mid-run" a state the test sets, not a race it hopes to win."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._left: int | None = None  # None: no limit

    def hold_after(self, steps: int) -> None:
        with self._cond:
            self._left = steps

    def release(self) -> None:
        with self._cond:
            self._left = None
            self._cond.notify_all()

    @hookimpl(wrapper=True)
    def arc_denoise_step(self) -> Any:
        with self._cond:
            self._cond.wait_for(lambda: self._left is None or self._left > 0, timeout=WAIT_MS / 1000)
            if self._left is not None:
                self._left = max(0, self._left - 1)
        return (yield)


@dataclass
class Server:
    url: str
    gate: StepGate
    token: str | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        if self.token:
            kwargs["headers"] = {"Authorization": f"Bearer {self.token}"}
        response = httpx.request(method, self.url + path, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def generate(self, **params: Any) -> dict[str, Any]:
        """Queue a generation and wait for it to succeed."""
        job = self.api("POST", "/api/sessions", json={"model": "toy", "params": params})
        return self.wait_job(job["id"])

    def wait_job(self, job_id: int) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            job = self.api("GET", f"/api/jobs/{job_id}")
            if job["state"] in ("succeeded", "failed", "cancelled", "interrupted"):
                assert job["state"] == "succeeded", job
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish")


@contextlib.contextmanager
def serve(tmp_path: Path, plugins: Any, token: str | None = None) -> Iterator[Server]:
    gate = StepGate()
    plugins.register(gate, name="step-gate")
    settings = Settings(data_dir=tmp_path / "server", device="cpu", gpu_poll_seconds=0.5)
    with running_server(create_app(settings, plugins=plugins, token=token), timeout=60) as url:
        try:
            yield Server(url=url, gate=gate, token=token)
        finally:
            gate.release()  # a held step must not keep the server from stopping


@pytest.fixture
def server(tmp_path: Path, toy_plugins) -> Iterator[Server]:
    with serve(tmp_path, toy_plugins) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg: Any) -> None:
        # A 4xx answer is logged by the browser itself; the UI shows it, so it is no fault.
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            problems.append(f"console error: {msg.text}")

    page.on("console", on_console)
    yield page
    context.close()
    assert not problems, problems


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_ui(page: Page, server: Server, route: str = "") -> None:
    page.goto(f"{server.url}/{route}")
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")


def wait_playing(page: Page, selector: str) -> None:
    """The <video> has decoded frames and its clock moves."""
    page.wait_for_function(
        """sel => { const v = document.querySelector(sel);
                    return v && v.readyState >= 2 && v.duration > 0 && v.videoWidth > 0; }""",
        arg=selector,
    )
    page.eval_on_selector(selector, "v => v.play()")
    page.wait_for_function(
        "sel => { const v = document.querySelector(sel); return !v.paused && v.currentTime > 0.2; }", arg=selector
    )


# Counts the blob URLs made and not yet revoked, and the intervals running (an init script).
COUNT_BLOBS_AND_INTERVALS = """
    window.liveBlobs = new Set();
    window.revokedBlobs = [];
    const make = URL.createObjectURL.bind(URL);
    const revoke = URL.revokeObjectURL.bind(URL);
    URL.createObjectURL = (obj) => { const url = make(obj); window.liveBlobs.add(url); return url; };
    URL.revokeObjectURL = (url) => { window.liveBlobs.delete(url); window.revokedBlobs.push(url); revoke(url); };
    window.liveIntervals = new Set();
    const every = window.setInterval.bind(window);
    const stop = window.clearInterval.bind(window);
    window.setInterval = (...args) => { const id = every(...args); window.liveIntervals.add(id); return id; };
    window.clearInterval = (id) => { window.liveIntervals.delete(id); stop(id); };
"""


# ---------------------------------------------------------------------- tests


def test_a_late_rest_answer_never_moves_progress_back(page: Page, server: Server) -> None:
    """A job view fetched over REST before a step event but answered after it (the log
    fetch does that) is older news: the step the events gave stays."""
    open_ui(page, server)
    steps = page.evaluate(
        """async () => {
            const { upsertJob } = await import('./static/jobs.js');
            const { state } = await import('./static/core.js');
            const base = { id: 9001, kind: 'generate', state: 'running', payload: { model: 'toy' } };
            const seen = [];
            const step = () => { const p = state.jobs.get(9001).progress; seen.push(p ? p.step : null); };
            upsertJob({ ...base, progress: { step: 3, total: 12 } }); step();
            upsertJob({ ...base, progress: null }); step();                   // computed before step 1
            upsertJob({ ...base, progress: { step: 1, total: 12 } }); step(); // computed at step 1
            upsertJob({ ...base, progress: { step: 4, total: 12 } }); step();
            upsertJob({ ...base, state: 'queued', progress: null }); step();  // the POST's answer
            upsertJob({ ...base, state: 'succeeded', progress: { step: 12, total: 12 } }); step();
            return seen;
        }"""
    )
    assert steps == [3, 3, 3, 4, 4, 12]


def test_with_a_token_the_page_asks_for_it_then_works(browser: Browser, tmp_path: Path, toy_plugins) -> None:
    token = "t0ken-for-the-browser-test"
    with serve(tmp_path, toy_plugins, token=token) as server:
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        try:
            page = context.new_page()
            page.add_init_script(COUNT_BLOBS_AND_INTERVALS)
            page.goto(f"{server.url}/")
            expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "unauthorized")
            expect(page.get_by_test_id("auth-banner")).to_be_visible()
            expect(page.get_by_test_id("auth-banner")).to_contain_text("?token=")
            expect(page.locator("#view")).to_contain_text("The server needs its token to list the models")
            shot(page, "12-token-refused")

            page.goto(f"{server.url}/?token={token}")
            expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
            expect(page.get_by_test_id("auth-banner")).to_be_hidden()
            page.locator('[data-testid="model-card"][data-model="toy"]').click()
            page.get_by_test_id("param-steps").fill("4")
            page.get_by_test_id("generate-button").click()
            output = page.get_by_test_id("output")
            expect(output.get_by_test_id("job-state")).to_have_text("succeeded")
            expect(output.get_by_test_id("job-logs")).to_contain_text("succeeded")
            # The video comes with the Authorization header, played from a blob.
            expect(output.get_by_test_id("result-video")).to_have_attribute("src", re.compile(r"^blob:"))
            wait_playing(page, '[data-testid="output"] video')
            shot(page, "13-token-accepted")
            live = "() => [...window.liveBlobs]"
            assert page.evaluate(live) == [output.get_by_test_id("result-video").get_attribute("src")]

            # Every blob URL is revoked when its video is pointed elsewhere or its view is left.
            output.get_by_test_id("open-session").click()
            video = page.get_by_test_id("session-video")
            expect(video).to_have_attribute("src", re.compile(r"^blob:"))
            wait_playing(page, '[data-testid="session-video"]')
            final = video.get_attribute("src")
            assert page.evaluate(live) == [final]  # the generate page's one went with it
            page.get_by_test_id("decode-step-select").select_option("2")
            page.get_by_test_id("decode-button").click()
            expect(page.get_by_test_id("stage-note")).to_have_text("Showing step 2 (decoded checkpoint)")
            expect(video).not_to_have_attribute("src", final)
            wait_playing(page, '[data-testid="session-video"]')
            assert page.evaluate(live) == [video.get_attribute("src")]
            assert final in page.evaluate("() => window.revokedBlobs")
            page.get_by_test_id("nav-history").click()
            thumb = page.get_by_test_id("history-video")
            expect(thumb).to_have_attribute("src", re.compile(r"^blob:"))
            assert page.evaluate(live) == [thumb.get_attribute("src")]
            # Timers run only while their view shows: the devices page holds its own clock alone.
            page.get_by_test_id("nav-gpus").click()
            expect(page.get_by_test_id("gpu-card").first).to_be_visible()
            assert page.evaluate(live) == []
            assert page.evaluate("() => window.liveIntervals.size") == 1
            page.get_by_test_id("nav-generate").click()
            expect(page.get_by_test_id("output").get_by_test_id("job-state")).to_have_text("succeeded")
            assert page.evaluate("() => window.liveIntervals.size") == 1  # the job timers' only
        finally:
            context.close()


def test_generate_streams_progress_previews_and_plays_the_video(page: Page, server: Server) -> None:
    open_ui(page, server)
    card = page.locator('[data-testid="model-card"][data-model="toy"]')
    expect(card).to_be_visible()
    expect(card.get_by_test_id("model-state")).to_have_text("cold")
    card.click()
    expect(card).to_have_attribute("aria-pressed", "true")
    # The form comes from the schema, with its defaults.
    steps = page.get_by_test_id("param-steps")
    expect(steps).to_have_value("8")
    expect(page.get_by_test_id("param-height")).to_have_value("64")
    expect(page.get_by_test_id("param-grain")).to_have_value("0.1")
    expect(page.get_by_test_id("param-prompt")).to_have_js_property("tagName", "TEXTAREA")
    shot(page, "01-models-and-form")

    steps.fill("12")
    page.get_by_test_id("param-prompt").fill("sunset over drifting bands")
    # Record every step the progress bar shows.
    page.evaluate(
        """() => { window.seenSteps = [];
            new MutationObserver(records => { for (const r of records)
                if (r.target.closest('[data-testid=output]'))
                    window.seenSteps.push(Number(r.target.getAttribute('aria-valuenow'))); })
            .observe(document.body, {subtree: true, attributes: true, attributeFilter: ['aria-valuenow']}); }"""
    )
    server.gate.hold_after(5)
    page.get_by_test_id("generate-button").click()

    output = page.get_by_test_id("output")
    bar = output.get_by_test_id("progress-bar")
    expect(bar).to_have_attribute("aria-valuenow", "5")
    expect(bar).to_have_attribute("aria-valuemax", "12")
    expect(output.get_by_test_id("progress-text")).to_contain_text("Step 5 / 12")
    expect(output.get_by_test_id("job-state")).to_have_text("running")
    preview = output.get_by_test_id("preview-image")
    expect(preview).to_be_visible()
    expect(preview).to_have_attribute("src", re.compile(r"^data:image/jpeg;base64,"))
    expect(output.get_by_test_id("preview-frame")).to_have_count(5)
    expect(output.get_by_test_id("job-logs")).to_contain_text("started")
    timer = output.get_by_test_id("job-timer")
    first = timer.inner_text()
    expect(timer).not_to_have_text(first)  # the clock runs while the job does
    shot(page, "02-running-progress-preview")

    server.gate.release()
    expect(bar).to_have_attribute("aria-valuenow", "12")
    expect(output.get_by_test_id("job-state")).to_have_text("succeeded")
    video = output.get_by_test_id("result-video")
    expect(video).to_be_visible()
    expect(video).to_have_attribute("src", re.compile(r"/files/videos/\d{8}-\d{6}-[0-9a-f]{8}\.mp4$"))
    wait_playing(page, '[data-testid="output"] video')
    expect(output.get_by_test_id("job-logs")).to_contain_text("succeeded")
    seen = page.evaluate("window.seenSteps")
    assert seen == sorted(seen) and seen[-1] == 12 and {5, 6, 12} <= set(seen), seen
    expect(card.get_by_test_id("model-state")).to_have_text("warm · cpu")
    shot(page, "03-finished-video")

    # On to the session page.
    output.get_by_test_id("open-session").click()
    expect(page).to_have_url(re.compile(r"#/session/\d{8}-\d{6}-[0-9a-f]{8}$"))
    current = page.locator('[data-testid="tree-node"][data-relation="current"]')
    expect(current).to_contain_text("create")
    expect(page.get_by_test_id("session-title")).to_have_text("sunset over drifting bands")


def test_session_page_forks_and_edits_into_the_lineage_tree(page: Page, server: Server) -> None:
    root = server.generate(steps=12, prompt="origin bands")["session_id"]
    open_ui(page, server, f"#/session/{root}")
    expect(page.get_by_test_id("session-status")).to_have_text("completed")
    expect(page.get_by_test_id("session-steps")).to_have_text("step 12 / 12")
    wait_playing(page, '[data-testid="session-video"]')
    nodes = page.get_by_test_id("tree-node")
    expect(nodes).to_have_count(1)
    expect(nodes.first).to_have_attribute("data-session-id", root)
    shot(page, "04-session-page")

    # Fork at step 6 with a new prompt: the child shows up in the tree, then finishes.
    page.get_by_test_id("tab-fork").click()
    expect(page.get_by_test_id("fork-prompt")).to_have_value("origin bands")
    page.get_by_test_id("fork-step").select_option("6")
    page.get_by_test_id("fork-prompt").fill("waves after the fork")
    page.get_by_test_id("fork-submit").click()
    child = page.locator('[data-testid="tree-node"][data-relation="child"]')
    expect(child).to_have_count(1)
    expect(child).to_contain_text("fork @ 6")
    fork_card = page.locator('[data-testid="session-jobs"] [data-testid="job-card"]').first
    expect(fork_card.get_by_test_id("job-state")).to_have_text("succeeded")
    expect(child).to_contain_text("waves after the fork")
    shot(page, "05-fork-done")

    child_id = child.get_attribute("data-session-id")
    child.click()
    expect(page).to_have_url(re.compile(f"#/session/{child_id}$"))
    expect(page.locator('[data-testid="tree-node"][data-relation="ancestor"]')).to_have_attribute(
        "data-session-id", root
    )
    expect(page.get_by_test_id("session-op")).to_contain_text("fork of")
    expect(page.get_by_test_id("session-op")).to_contain_text("at step 6")
    wait_playing(page, '[data-testid="session-video"]')
    # A fork of the fork starts at its own fork point or later (before it, its state is the root's).
    child_steps = server.api("GET", f"/api/sessions/{child_id}")["checkpoint_steps"]
    expect(page.get_by_test_id("fork-step").locator("option")).to_have_text(
        [f"step {s}" for s in child_steps if 6 <= s < 12]
    )

    # A checkpoint decoded on demand replaces the final video until "back to final".
    page.get_by_test_id("decode-step-select").select_option("8")
    page.get_by_test_id("decode-button").click()
    expect(page.get_by_test_id("stage-note")).to_have_text("Showing step 8 (decoded checkpoint)")
    expect(page.get_by_test_id("session-video")).to_have_attribute("src", re.compile(r"-step8\.mp4$"))
    wait_playing(page, '[data-testid="session-video"]')
    page.get_by_test_id("show-final").click()
    expect(page.get_by_test_id("stage-note")).to_have_text("Final video")

    # Edit: draw the region by dragging over the paused frame (64x64 video pixels).
    page.get_by_test_id("tab-edit").click()
    canvas = page.get_by_test_id("mask-canvas")
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 200, box
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=4)
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.625, steps=4)
    page.mouse.up()
    readout = page.get_by_test_id("mask-readout")
    expect(readout).to_have_attribute("data-rect", "16,16,48,40")
    expect(readout).to_contain_text("32\N{MULTIPLICATION SIGN}24 px")
    page.get_by_test_id("frame-scrubber").fill("3")
    page.get_by_test_id("edit-prompt").fill("sparks in the box")
    shot(page, "06-edit-mask")
    page.get_by_test_id("edit-submit").click()
    edited = page.locator('[data-testid="tree-node"][data-relation="child"]')
    expect(edited).to_have_count(1)
    expect(edited).to_contain_text("edit @ 6")  # strength 0.5 of 12 steps
    edit_card = page.locator('[data-testid="session-jobs"] [data-testid="job-card"]').first
    expect(edit_card.get_by_test_id("job-state")).to_have_text("succeeded")
    detail = server.api("GET", f"/api/sessions/{edited.get_attribute('data-session-id')}")
    assert detail["doc"]["edit"]["rect"] == [16, 16, 48, 40], detail["doc"]["edit"]
    assert detail["doc"]["edit"]["start_step"] == 6
    assert detail["ancestors"] == [root, child_id]

    # Extend and rewind are for autoregressive models: the toy's session page offers neither.
    for tab in ("fork", "edit", "resume"):
        expect(page.get_by_test_id(f"tab-{tab}")).to_be_visible()
    expect(page.get_by_test_id("tab-extend")).to_be_hidden()
    expect(page.get_by_test_id("tab-rewind")).to_be_hidden()
    # A fork runs at least one step from a checkpoint: the steps offered are the
    # checkpointed ones before the end (never the last, which the engine refuses).
    page.get_by_test_id("tab-fork").click()
    offered = [s for s in child_steps if 6 <= s < 12]  # the fork's own steps, from its fork point
    assert offered and 12 in child_steps, child_steps
    options = page.get_by_test_id("fork-step").locator("option")
    expect(options).to_have_count(len(offered))
    assert [int(v) for v in options.evaluate_all("os => os.map(o => o.value)")] == offered
    expect(page.get_by_test_id("fork-step-range")).to_have_attribute("max", str(len(offered) - 1))
    expect(page.get_by_test_id("fork-step-hint")).to_have_text(
        f"{len(offered)} checkpointed steps · {offered[0]} … {offered[-1]}"
    )
    # The slider walks the same steps.
    page.get_by_test_id("fork-step-range").fill(str(len(offered) - 1))
    expect(page.get_by_test_id("fork-step")).to_have_value(str(offered[-1]))
    shot(page, "07-fork-bound")

    # Back at the root, the whole lineage: root -> fork -> edit.
    page.locator(f'[data-testid="tree-node"][data-session-id="{root}"]').click()
    expect(page.locator('[data-testid="tree-node"][data-relation="current"]')).to_have_attribute(
        "data-session-id", root
    )
    expect(page.locator('[data-testid="tree-node"][data-relation="descendant"]')).to_have_count(1)


def test_a_bad_parameter_shows_the_servers_message(page: Page, server: Server) -> None:
    open_ui(page, server)
    page.locator('[data-testid="model-card"][data-model="toy"]').click()
    page.get_by_test_id("param-height").fill("12")
    page.get_by_test_id("generate-button").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("height: must be a multiple of 8 (got 12)")
    expect(page.get_by_test_id("field-error-height")).to_have_text("must be a multiple of 8 (got 12)")
    expect(page.get_by_test_id("param-height")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("job-row")).to_have_count(0)
    shot(page, "08-error")
    # Fixing the field clears its error, and the job goes through.
    page.get_by_test_id("param-height").fill("16")
    expect(page.get_by_test_id("field-error-height")).to_be_hidden()
    page.get_by_test_id("generate-button").click()
    expect(page.get_by_test_id("form-error")).to_be_hidden()
    expect(page.get_by_test_id("job-row")).to_have_count(1)


def test_devices_and_history_show_the_warm_model_and_every_session(page: Page, server: Server) -> None:
    first = server.generate(steps=4, prompt="first light")["session_id"]
    second = server.generate(steps=4, prompt="second wind", seed=3)["session_id"]

    open_ui(page, server, "#/gpus")
    cpu = page.locator('[data-testid="gpu-card"][data-device="cpu"]')
    expect(cpu).to_be_visible()
    expect(cpu.get_by_test_id("gpu-model")).to_have_text(re.compile(r"toy/default\s*warm"))
    bar = cpu.get_by_test_id("gpu-memory-bar")
    assert 0 < int(bar.get_attribute("aria-valuenow")) <= int(bar.get_attribute("aria-valuemax"))
    expect(cpu.get_by_test_id("gpu-memory-text")).to_contain_text("free")
    expect(page.locator('[data-testid="cache-row"][data-label="toy/default"]')).to_contain_text("warm")
    shot(page, "09-devices")

    page.get_by_test_id("nav-history").click()
    cards = page.get_by_test_id("history-card")
    expect(cards).to_have_count(2)
    assert [c.get_attribute("data-session-id") for c in cards.all()] == [second, first]  # newest first
    expect(cards.first).to_contain_text("second wind")
    expect(cards.first.get_by_test_id("history-status")).to_have_text("completed")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=history-video]')].every(v => v.readyState >= 1)"
    )
    shot(page, "10-history")
    page.get_by_test_id("history-search").fill("first")
    expect(cards).to_have_count(1)
    cards.first.click()
    expect(page).to_have_url(re.compile(f"#/session/{first}$"))


def test_history_shows_a_damaged_session_beside_the_healthy_one(page: Page, server: Server, tmp_path: Path) -> None:
    good = server.generate(steps=2, prompt="still fine")["session_id"]
    bad = server.generate(steps=2, prompt="to be damaged", seed=4)["session_id"]
    (tmp_path / "server" / "sessions" / bad / "session.json").write_text("[]")

    open_ui(page, server, "#/history")
    cards = page.get_by_test_id("history-card")
    expect(cards).to_have_count(2)
    healthy = page.locator(f'[data-testid="history-card"][data-session-id="{good}"]')
    damaged = page.locator(f'[data-testid="history-card"][data-session-id="{bad}"]')
    expect(healthy.get_by_test_id("history-status")).to_have_text("completed")
    expect(healthy).to_contain_text("still fine")
    expect(damaged.get_by_test_id("history-status")).to_have_text("damaged")
    expect(damaged.get_by_test_id("history-damaged")).to_contain_text("sessions repair")
    shot(page, "14-history-damaged")


def test_pause_cancel_and_resume_the_queue(page: Page, server: Server) -> None:
    open_ui(page, server)
    page.locator('[data-testid="model-card"][data-model="toy"]').click()
    page.get_by_test_id("param-steps").fill("6")

    # A queued job, cancelled before it runs.
    page.get_by_test_id("queue-toggle").click()
    expect(page.get_by_test_id("paused-banner")).to_be_visible()
    expect(page.get_by_test_id("queue-toggle")).to_have_text("Resume queue")
    page.get_by_test_id("generate-button").click()
    output = page.get_by_test_id("output")
    expect(output.get_by_test_id("job-state")).to_have_text("queued")
    expect(output.get_by_test_id("progress-text")).to_contain_text("next in line")
    expect(page.get_by_test_id("queue-info")).to_have_text("0 running · 1 queued")
    output.get_by_test_id("job-cancel").click()
    expect(output.get_by_test_id("job-state")).to_have_text("cancelled")

    # A running job, cancelled mid-way: it stops at its next step, its session paused.
    page.get_by_test_id("queue-toggle").click()
    expect(page.get_by_test_id("paused-banner")).to_be_hidden()
    server.gate.hold_after(2)
    page.get_by_test_id("generate-button").click()
    expect(output.get_by_test_id("progress-bar")).to_have_attribute("aria-valuenow", "2")
    expect(output.get_by_test_id("job-cancel")).to_have_attribute("title", re.compile("stops at the next step"))
    output.get_by_test_id("job-cancel").click()
    expect(output.get_by_test_id("job-logs")).to_contain_text("cancel requested")
    # In-process, a cancel waits for the step that runs: the card says so while it does.
    note = output.get_by_test_id("cancel-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("stops at the next step (in-process")
    expect(output.get_by_test_id("job-cancel")).to_have_text("Stopping…")
    expect(output.get_by_test_id("progress-text")).to_contain_text("cancel requested: stopping at the next step")
    shot(page, "11a-cancel-requested")
    server.gate.release()
    expect(output.get_by_test_id("job-state")).to_have_text("cancelled")
    expect(output.get_by_test_id("job-error")).to_contain_text("is paused there")
    expect(output.get_by_test_id("job-resume")).to_be_visible()
    rows = page.get_by_test_id("job-row")
    expect(rows).to_have_count(2)
    shot(page, "11-queue-cancelled")

    # The paused session resumes from its session page.
    output.get_by_test_id("open-session").click()
    expect(page.get_by_test_id("session-status")).to_have_text("paused")
    page.get_by_test_id("tab-resume").click()
    expect(page.get_by_test_id("resume-note")).to_contain_text("from step")
    page.get_by_test_id("resume-submit").click()
    expect(page.get_by_test_id("session-status")).to_have_text("completed")
    wait_playing(page, '[data-testid="session-video"]')


def test_the_page_reconnects_and_renders_from_the_snapshot(page: Page, server: Server) -> None:
    sockets: list[Any] = []
    silent: list[Any] = []

    def route(ws: Any) -> None:
        sockets.append(ws)
        if len(sockets) == 2:  # the first reconnection: held open, silent
            silent.append(ws)
            return
        ws.connect_to_server()

    page.route_web_socket(re.compile(r"/api/events"), route)
    open_ui(page, server)
    expect(page.get_by_test_id("job-row")).to_have_count(0)

    sockets[0].close()
    expect(page.get_by_test_id("conn-status")).not_to_have_attribute("data-state", "live")
    deadline = time.monotonic() + WAIT_MS / 1000
    while not silent:
        assert time.monotonic() < deadline, "the page did not reconnect"
        page.wait_for_timeout(50)
    # While the page hears nothing, a job runs to the end.
    done = server.generate(steps=4, prompt="while you were away")
    expect(page.get_by_test_id("job-row")).to_have_count(0)
    silent[0].close()
    # The next connection gets the snapshot: the job is there, finished.
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
    row = page.locator(f'[data-testid="job-row"][data-job-id="{done["id"]}"]')
    expect(row.get_by_test_id("job-state")).to_have_text("succeeded")
    assert len(sockets) == 3


SCHEMA_MODEL = {
    "name": "probe",
    "fixed_params": ["steps"],
    "variants": [{"name": "small", "param_defaults": {"steps": 4}}],
    "params_schema": {
        "properties": {
            "prompt": {"type": "string", "default": "a cat"},
            "steps": {"type": "integer", "default": 8, "minimum": 1},
            "shift": {"type": "number", "default": 5.0, "exclusiveMinimum": 0},
            "multiscale": {"type": "boolean", "default": False},
            "schedule": {"enum": ["linear", "cosine"], "default": "cosine"},
            "sampler": {"$ref": "#/$defs/Sampler", "default": "euler"},
            "noise": {"anyOf": [{"type": "number", "maximum": 1}, {"type": "null"}], "default": 0.025},
            "timesteps": {"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "null"}], "default": None},
        },
        "$defs": {"Sampler": {"enum": ["euler", "heun"], "type": "string"}},
    },
}


def test_schema_forms_cover_every_field_kind(page: Page, server: Server) -> None:
    open_ui(page, server)
    out = page.evaluate(
        """async model => {
            const { schemaFields } = await import('./static/form.js');
            const form = schemaFields(model, { idPrefix: 'probe' });
            document.getElementById('view').append(form.el);
            const kinds = Object.fromEntries(
                form.fields.map(f => [f.name, [f.kind, f.control.tagName, f.control.type]]));
            const initial = form.read().params;
            const c = name => form.byName.get(name).control;
            c('multiscale').checked = true;
            c('schedule').value = '0';
            c('timesteps').value = '[1000, 500.5]';
            c('noise').value = '';
            const changed = form.read().params;
            c('timesteps').value = '[1000,';
            const broken = form.read().errors;
            form.fill(form.defaults('small'));
            return { kinds, initial, changed, broken, variant: form.read().params.steps,
                     fixedTag: !!form.byName.get('steps').el.querySelector('.tag-fixed') };
        }""",
        SCHEMA_MODEL,
    )
    assert out["kinds"] == {
        "prompt": ["text", "TEXTAREA", "textarea"],
        "steps": ["int", "INPUT", "number"],
        "shift": ["float", "INPUT", "number"],
        "multiscale": ["bool", "INPUT", "checkbox"],
        "schedule": ["enum", "SELECT", "select-one"],
        "sampler": ["enum", "SELECT", "select-one"],
        "noise": ["float", "INPUT", "number"],
        "timesteps": ["json", "TEXTAREA", "textarea"],
    }
    assert out["initial"] == {
        "prompt": "a cat",
        "steps": 8,
        "shift": 5,
        "multiscale": False,
        "schedule": "cosine",
        "sampler": "euler",
        "noise": 0.025,
        "timesteps": None,
    }
    assert out["changed"] == out["initial"] | {
        "multiscale": True,
        "schedule": "linear",
        "timesteps": [1000, 500.5],
        "noise": None,
    }
    assert out["broken"] == [{"field": "timesteps", "message": "not valid JSON"}]
    assert out["variant"] == 4 and out["fixedTag"] is True


# ---------------------------------------------------------------------- every model, the capabilities


FORM_CHECKED = ("num_frames", "height", "width", "steps", "guidance")


@pytest.mark.slow
def test_every_model_generates_with_the_forms_defaults_and_plays(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pick a card, press Generate: the form shows and sends the defaults of the variant
    that will run (``auto`` resolved as the server resolves it: the tiny one here, without
    weights), so a run with the defaults finishes in seconds on a CPU, for every model."""
    from arc_fabric_core.dispatch.plugins import Plugins
    from arc_toy import plugin as toy

    plugins = Plugins()  # the installed plugins, and the toy
    plugins.register(toy, name="toy")
    for name in plugins.model_names():
        for variant in plugins.model(name).variants:
            if variant.weights_env:
                monkeypatch.delenv(variant.weights_env, raising=False)
    expected = {"wan21": "tiny", "ltx": "tiny", "longlive": "tiny", "toy": "default"}
    assert set(expected) <= set(plugins.model_names())
    with serve(tmp_path, plugins) as server:
        models = {m["name"]: m for m in server.api("GET", "/api/models")}
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        try:
            page = context.new_page()
            open_ui(page, server)
            for name, variant in expected.items():
                defaults = next(v for v in models[name]["variants"] if v["name"] == variant)["defaults"]
                page.locator(f'[data-testid="model-card"][data-model="{name}"]').click()
                expect(page.get_by_test_id("form-model")).to_have_text(name)
                expect(page.get_by_test_id("form-variant-name")).to_have_text(f"auto → {variant}")
                expect(page.get_by_test_id("variant-select").locator("option").first).to_have_text(f"auto → {variant}")
                shown = {f: float(page.get_by_test_id(f"param-{f}").input_value()) for f in FORM_CHECKED}
                assert shown == {f: float(defaults[f]) for f in FORM_CHECKED}, (name, shown)
                warning = page.get_by_test_id("noise-warning")
                if models[name]["needs_weights"]:
                    expect(warning).to_have_text("random weights: the video is noise")
                else:
                    expect(warning).to_have_count(0)
                shot(page, f"14-defaults-{name}")
                page.get_by_test_id("generate-button").click()
                output = page.get_by_test_id("output")
                card = output.locator('[data-testid="job-card"]').first
                expect(card).to_contain_text(f"Generate · {name}")
                expect(card.get_by_test_id("job-state")).to_have_text("succeeded", timeout=240_000)
                job = server.api("GET", f"/api/jobs/{card.get_attribute('data-job-id')}")
                session = server.api("GET", f"/api/sessions/{job['session_id']}")
                assert session["variant"] == variant, session
                sent = {k: session["doc"]["params"][k] for k in ("num_frames", "height", "width", "steps")}
                assert sent == {k: defaults[k] for k in sent}, (name, sent)
                wait_playing(page, '[data-testid="output"] video')
                shot(page, f"15-played-{name}")

            # ltx, another variant picked: the form refills with that variant's defaults.
            page.locator('[data-testid="model-card"][data-model="ltx"]').click()
            page.get_by_test_id("generate-form").locator("details.advanced summary").click()
            page.get_by_test_id("variant-select").select_option("2b-dev")
            dev = next(v for v in models["ltx"]["variants"] if v["name"] == "2b-dev")["defaults"]
            expect(page.get_by_test_id("param-num_frames")).to_have_value(str(dev["num_frames"]))
            expect(page.get_by_test_id("param-steps")).to_have_value(str(dev["steps"]))
            expect(page.get_by_test_id("form-variant-name")).to_have_text("2b-dev")
            expect(page.get_by_test_id("noise-warning")).to_have_count(0)
            page.get_by_test_id("variant-select").select_option("")
            expect(page.get_by_test_id("param-num_frames")).to_have_value("9")
            shot(page, "16-variant-switch")
        finally:
            context.close()


@pytest.fixture
def blocks_server(tmp_path: Path, toy_plugins) -> Iterator[Server]:
    from blocks_plugin import Blocks

    toy_plugins.register(Blocks(), name="blocks")
    with serve(tmp_path, toy_plugins) as running:
        yield running


def test_an_autoregressive_session_offers_extend_and_rewind_but_no_edit(
    browser: Browser, blocks_server: Server
) -> None:
    server = blocks_server
    job = server.api("POST", "/api/sessions", json={"model": "blocks", "params": {"steps": 2, "num_frames": 6}})
    root = server.wait_job(job["id"])["session_id"]  # 3 blocks of 2 steps
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        page = context.new_page()
        open_ui(page, server, f"#/session/{root}")
        expect(page.get_by_test_id("session-status")).to_have_text("completed")
        for tab in ("fork", "resume", "extend", "rewind"):
            expect(page.get_by_test_id(f"tab-{tab}")).to_be_visible()
        expect(page.get_by_test_id("tab-edit")).to_be_hidden()

        page.get_by_test_id("tab-rewind").click()
        expect(page.get_by_test_id("rewind-block-hint")).to_have_text("0 … 2 of 3 blocks")
        expect(page.get_by_test_id("rewind-block")).to_have_value("2")
        # The engine's bound, refused before anything queues, with its message.
        page.get_by_test_id("rewind-block").fill("3")
        page.get_by_test_id("rewind-submit").click()
        error = page.locator('[data-testid="action-error"]:visible')
        expect(error).to_have_text(f"block: session {root} has blocks 0..2, got 3")
        page.get_by_test_id("rewind-block").fill("1")
        page.get_by_test_id("rewind-prompt").fill("the ending, again")
        shot(page, "17-rewind")
        page.get_by_test_id("rewind-submit").click()
        child = page.locator('[data-testid="tree-node"][data-relation="child"]')
        expect(child).to_have_count(1)
        expect(child).to_contain_text("fork @ 2")  # block 1 starts at step 2
        card = page.locator('[data-testid="session-jobs"] [data-testid="job-card"]').first
        expect(card.get_by_test_id("job-state")).to_have_text("succeeded")
        rewound = server.api("GET", f"/api/sessions/{child.get_attribute('data-session-id')}")
        assert rewound["parent_step"] == 2 and rewound["doc"]["params"]["prompt"] == "the ending, again"
        shot(page, "18-rewound")
    finally:
        context.close()


# ---------------------------------------------------------------------- what a model's capabilities allow


def test_wan_and_longlive_session_pages_show_only_what_their_capabilities_allow(
    browser: Browser, tmp_path: Path
) -> None:
    """The installed plugins declare nothing: their capabilities come from their hooks.
    A Wan session edits (with a mask) and does not extend; a LongLive one extends and
    rewinds and does not edit. The sessions are created, not run (nothing loads)."""
    pytest.importorskip("arc_wan21")
    pytest.importorskip("arc_longlive")
    import arc_longlive.plugin as longlive
    import arc_wan21.plugin as wan21
    from arc_fabric_core.dispatch.plugins import Plugins
    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.store.files import SessionStore

    plugins = Plugins(load_entrypoints=False)
    plugins.register(wan21, name="wan21")
    plugins.register(longlive, name="longlive")
    with serve(tmp_path, plugins) as server:
        engine = Engine(SessionStore(tmp_path / "server" / "sessions"), plugins=plugins, device="cpu")
        wan = engine.create("wan21", {"prompt": "a fox in the snow"}, variant="tiny").doc.id
        live = engine.create("longlive", {"prompt": "a long walk"}, variant="tiny").doc.id
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        try:
            page = context.new_page()
            open_ui(page, server)
            cards = {
                name: page.locator(f'[data-testid="model-card"][data-model="{name}"]') for name in ("wan21", "longlive")
            }
            expect(cards["wan21"].get_by_test_id("model-capability")).to_have_text(["edit"])
            expect(cards["longlive"].get_by_test_id("model-capability")).to_have_text(
                ["extend", "rewind", "autoregressive", "passes"]
            )
            shot(page, "19-capability-tags")

            page.goto(f"{server.url}/#/session/{wan}")
            expect(page.get_by_test_id("session-status")).to_have_text("created")
            for tab in ("fork", "edit", "resume"):
                expect(page.get_by_test_id(f"tab-{tab}")).to_be_visible()
            for tab in ("extend", "rewind"):
                expect(page.get_by_test_id(f"tab-{tab}")).to_be_hidden()
            page.get_by_test_id("tab-edit").click()
            expect(page.get_by_test_id("mask-row")).to_be_visible()
            expect(page.get_by_test_id("video-stage")).to_have_class(re.compile(r"\bmasking\b"))
            # Not run yet: no checkpoint, so no step to fork from is offered.
            page.get_by_test_id("tab-fork").click()
            expect(page.get_by_test_id("fork-step").locator("option")).to_have_count(0)
            expect(page.get_by_test_id("fork-step-hint")).to_have_text("no checkpoint to fork from")
            expect(page.get_by_test_id("fork-submit")).to_be_disabled()
            shot(page, "20-wan-session")

            page.goto(f"{server.url}/#/session/{live}")
            expect(page.get_by_test_id("session-id")).to_have_text(live)
            for tab in ("fork", "resume", "extend", "rewind"):
                expect(page.get_by_test_id(f"tab-{tab}")).to_be_visible()
            expect(page.get_by_test_id("tab-edit")).to_be_hidden()
            page.get_by_test_id("tab-rewind").click()
            expect(page.get_by_test_id("rewind-block-hint")).to_have_text("0 … 1 of 2 blocks")
            shot(page, "21-longlive-session")
        finally:
            context.close()


def test_declared_capabilities_are_what_the_session_page_offers(browser: Browser, tmp_path: Path, toy_plugins) -> None:
    """A model that declares less than its hooks allow: the toy editing without masks
    (and taking action arrays), the blocks model extending without rewinding."""
    from declared_plugin import DeclaredBlocks, DeclaredToy

    from arc_fabric_core.contract.capabilities import Capabilities

    toy_plugins.register(DeclaredToy("pad", Capabilities(masks=False, inputs=("actions",))), name="pad")
    toy_plugins.register(DeclaredBlocks("stream", Capabilities(rewind=False)), name="stream")
    with serve(tmp_path, toy_plugins) as server:

        def session(model: str, **params: Any) -> str:
            job = server.api("POST", "/api/sessions", json={"model": model, "params": params})
            return str(server.wait_job(job["id"])["session_id"])

        pad = session("pad", steps=8, prompt="no mask here")
        stream = session("stream", steps=2, num_frames=4)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        try:
            page = context.new_page()
            open_ui(page, server)
            card = page.locator('[data-testid="model-card"][data-model="pad"]')
            expect(card.get_by_test_id("model-capability")).to_have_text(["edit", "actions input"])
            stream_card = page.locator('[data-testid="model-card"][data-model="stream"]')
            expect(stream_card.get_by_test_id("model-capability")).to_have_text(["extend", "autoregressive", "passes"])

            page.goto(f"{server.url}/#/session/{pad}")
            expect(page.get_by_test_id("session-status")).to_have_text("completed")
            page.get_by_test_id("tab-edit").click()
            expect(page.get_by_test_id("edit-help")).to_contain_text("this model takes no mask")
            expect(page.get_by_test_id("mask-row")).to_be_hidden()
            expect(page.get_by_test_id("mask-frames")).to_be_hidden()
            expect(page.get_by_test_id("video-stage")).not_to_have_class(re.compile(r"\bmasking\b"))
            expect(page.get_by_test_id("session-video")).to_have_js_property("controls", True)
            expect(page.get_by_test_id("edit-submit")).to_have_text("Edit video")
            shot(page, "22-edit-without-mask")
            page.get_by_test_id("edit-submit").click()
            edited = page.locator('[data-testid="tree-node"][data-relation="child"]')
            expect(edited).to_contain_text("edit @ 4")
            card = page.locator('[data-testid="session-jobs"] [data-testid="job-card"]').first
            expect(card.get_by_test_id("job-state")).to_have_text("succeeded")

            page.goto(f"{server.url}/#/session/{stream}")
            expect(page.get_by_test_id("session-id")).to_have_text(stream)
            expect(page.get_by_test_id("tab-extend")).to_be_visible()
            expect(page.get_by_test_id("tab-rewind")).to_be_hidden()
            expect(page.get_by_test_id("tab-edit")).to_be_hidden()
            shot(page, "23-extend-without-rewind")
        finally:
            context.close()
