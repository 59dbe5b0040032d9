"""The generate form offers a model's inputs beside text (``tests/steered_plugin.py``'s
actions and first image): the server's refusal lands on the input's field, and a good
value queues a session that holds it. A real server on 127.0.0.1 and headless Chromium,
as in ``test_ui_browser.py`` (whose helpers these tests use)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from playwright.sync_api import Browser, Page, expect, sync_playwright
from steered_plugin import Steered
from test_ui_browser import BROWSER_ARGS, CHROMIUM, WAIT_MS, Server, open_ui, serve, shot

from arc_fabric_core.store.files import SessionStore

ACTIONS = [[0.1, 0.0], [0.2, -0.1], [-0.3, 0.4], [0.0, 0.2]]


@pytest.fixture
def server(tmp_path: Path, toy_plugins: Any) -> Iterator[Server]:
    toy_plugins.register(Steered(), name="steered")
    with serve(tmp_path, toy_plugins) as running:
        yield running


@pytest.fixture
def page(server: Server) -> Iterator[Page]:
    with sync_playwright() as p:
        browser: Browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        browser.close()
        assert not errors, errors


def test_the_generate_form_takes_a_models_inputs(page: Page, server: Server, tmp_path: Path) -> None:
    open_ui(page, server)
    page.locator('[data-testid="model-card"][data-model="steered"]').click()
    inputs = page.get_by_test_id("generate-inputs")
    expect(inputs).to_be_visible()
    expect(inputs.get_by_test_id("field-inputs.actions")).to_contain_text("Shape (*, 2), 2 rows per chunk")
    optional = "optional: a path on the server, or a JSON array"
    expect(page.get_by_test_id("input-image")).to_have_attribute("placeholder", optional)
    for name, value in (("num_frames", "4"), ("steps", "3"), ("height", "8"), ("width", "8")):
        page.get_by_test_id(f"param-{name}").fill(value)

    page.get_by_test_id("input-actions").fill(json.dumps(ACTIONS[:3]))
    page.get_by_test_id("generate-button").click()
    expect(page.get_by_test_id("field-error-inputs.actions")).to_contain_text("must have shape (4, 2)")
    expect(page.get_by_test_id("job-row")).to_have_count(0)
    shot(page, "inputs-refused")

    page.get_by_test_id("input-actions").fill("[[0.1, ")
    page.get_by_test_id("generate-button").click()
    expect(page.get_by_test_id("field-error-inputs.actions")).to_contain_text("not a JSON array")

    page.get_by_test_id("input-actions").fill(json.dumps(ACTIONS))
    page.get_by_test_id("generate-button").click()
    expect(page.get_by_test_id("job-row")).to_have_count(1)
    (job,) = server.api("GET", "/api/jobs")
    job = server.wait_job(job["id"])
    assert job["state"] == "succeeded", job
    shot(page, "inputs-queued")
    store = SessionStore(tmp_path / "server" / "sessions")  # where serve() puts the server's data
    held = store.read_inputs(store.load_doc(job["session_id"]))["actions"]
    assert torch.equal(held, torch.tensor(ACTIONS))


def test_the_extend_form_takes_the_new_blocks_inputs(page: Page, server: Server) -> None:
    params = {"num_frames": 2, "steps": 2, "height": 8, "width": 8}
    job = server.api(
        "POST", "/api/sessions", json={"model": "steered", "params": params, "inputs": {"actions": ACTIONS[:2]}}
    )
    root = server.wait_job(job["id"])["session_id"]
    open_ui(page, server, f"#/session/{root}")
    expect(page.get_by_test_id("session-status")).to_have_text("completed")
    page.get_by_test_id("tab-extend").click()
    page.get_by_test_id("extend-blocks").fill("1")
    page.get_by_test_id("extend-input-actions").fill(json.dumps(ACTIONS[2:3]))
    page.get_by_test_id("extend-submit").click()
    error = page.locator('[data-testid="action-error"]:visible')
    expect(error).to_contain_text("inputs.actions: must have shape (2, 2)")
    expect(page.get_by_test_id("extend-field-actions").get_by_test_id("field-error-inputs")).to_contain_text(
        "must have shape (2, 2)"
    )
    page.get_by_test_id("extend-input-actions").fill(json.dumps(ACTIONS[2:]))
    shot(page, "inputs-extend")
    page.get_by_test_id("extend-submit").click()
    expect(error).to_be_hidden()
    for _ in range(600):
        jobs = [j for j in server.api("GET", "/api/jobs") if j["kind"] == "extend"]
        if jobs and jobs[0]["state"] in ("succeeded", "failed"):
            break
        page.wait_for_timeout(50)
    (done,) = jobs
    assert done["state"] == "succeeded", done
    detail = server.api("GET", f"/api/sessions/{done['session_id']}")
    assert set(detail["doc"]["inputs"]) == {"actions"} and detail["doc"]["parent"] == root
