"""The session page's operation forms come from the operations registry: a plugin's
operation (``tests/retry_operation.py``) gets a form built from its request schema, and
the built-in ones keep their own forms, bound to their schemas. A real server on
127.0.0.1, driven by headless Chromium, as in ``test_ui_browser.py`` (whose helpers these
tests use); screenshots go to ``outputs/ui-screenshots/``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api", reason="the browser tests need the playwright package")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from retry_operation import RetryPlugin
from test_ui_browser import BROWSER_ARGS, CHROMIUM, WAIT_MS, Server, open_ui, serve, shot

JOB_CARD = '[data-testid="session-jobs"] [data-testid="job-card"]'


@pytest.fixture
def server(tmp_path: Path, toy_plugins: Any) -> Iterator[Server]:
    toy_plugins.register(RetryPlugin(), name="retry")
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


def sent_bodies(page: Page, path_end: str) -> list[dict[str, Any]]:
    """The JSON bodies the page POSTs to a path ending in ``path_end``, as they are sent."""
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            bodies.append(json.loads(r.post_data or "{}")) if r.method == "POST" and r.url.endswith(path_end) else None
        ),
    )
    return bodies


def test_a_plugins_operation_gets_a_form_built_from_its_schema(page: Page, server: Server) -> None:
    root = server.generate(steps=6, prompt="bands to retry", seed=1)["session_id"]
    listed = {op["name"]: op for op in server.api("GET", "/api/operations")}
    assert listed["retry"]["schema"]["required"] == ["seed"]
    bodies = sent_bodies(page, f"/api/sessions/{root}/retry")
    open_ui(page, server, f"#/session/{root}")
    expect(page.get_by_test_id("session-status")).to_have_text("completed")

    # A tab for it beside the built-in ones the toy takes (no extend or rewind: not autoregressive).
    tabs = page.get_by_test_id("action-tabs").locator(".tab:visible")
    expect(tabs).to_have_text(["Fork", "Edit", "Resume", "Hand-off", "Retry"])
    page.get_by_test_id("tab-retry").click()
    form = page.get_by_test_id("op-form-retry")
    expect(form).to_be_visible()
    expect(form.get_by_test_id("op-summary")).to_have_text(
        "The same model and parameters from fresh noise of another seed."
    )
    # The schema's one field: a required integer, at least 0 (its 64-bit maximum is no bound a person meets).
    seed = form.get_by_test_id("op-retry-seed")
    expect(seed).to_have_attribute("type", "number")
    expect(seed).to_have_attribute("min", "0")
    expect(seed).to_have_attribute("step", "1")
    expect(seed).not_to_have_attribute("max", re.compile(".*"))
    expect(seed).to_have_value("")
    field = form.get_by_test_id("field-seed")
    expect(field.get_by_test_id("field-required")).to_be_visible()
    expect(field.locator(".field-help")).to_have_text("≥ 0 · The seed of the new noise")
    expect(form.locator("[data-field]")).to_have_count(1)
    shot(page, "30-retry-form")

    # Refused by the schema: the message next to the field, and nothing queued.
    seed.fill("-1")
    form.get_by_test_id("op-submit").click()
    error = form.get_by_test_id("field-error-seed")
    expect(error).to_have_text("Input should be greater than or equal to 0")
    expect(seed).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_test_id("action-error")).to_have_text("seed: Input should be greater than or equal to 0")
    shot(page, "31-retry-error")
    # Refused by the operation's check (the session has that seed), with its message.
    seed.fill("1")
    form.get_by_test_id("op-submit").click()
    expect(error).to_have_text(f"session {root} has seed 1 already; give another")
    # Left out, it is required: the server says so by name.
    seed.fill("")
    form.get_by_test_id("op-submit").click()
    expect(error).to_have_text("Field required")
    assert not [j for j in server.api("GET", "/api/jobs") if j["kind"] == "retry"]

    # Typing clears the error; seed 7 queues a retry job, shown as the other forms' are.
    seed.fill("7")
    expect(error).to_be_hidden()
    expect(form.get_by_test_id("action-error")).to_be_hidden()
    form.get_by_test_id("op-submit").click()
    card = page.locator(JOB_CARD).first
    expect(card.locator(".job-title")).to_have_text(f"Retry of {root.split('-')[-1]} · seed 7")
    expect(card.get_by_test_id("job-state")).to_have_text("succeeded")
    child = page.locator('[data-testid="tree-node"][data-relation="child"]')
    expect(child).to_have_count(1)
    expect(child).to_contain_text("retry @ 0")
    assert bodies[-1] == {"seed": 7}, bodies
    job = server.api("GET", f"/api/jobs/{card.get_attribute('data-job-id')}")
    assert job["kind"] == "retry" and job["payload"] == {"session": root, "seed": 7}, job
    made = server.api("GET", f"/api/sessions/{job['session_id']}")
    assert made["operation"] == "retry" and made["parent"] == root, made
    assert made["doc"]["params"]["seed"] == 7 and made["doc"]["overrides"] == {"seed": 7}
    shot(page, "32-retry-done")

    # The new session's own page: made by retry, and it takes retry too.
    child.click()
    expect(page.get_by_test_id("session-op")).to_contain_text("retry of")
    expect(page.get_by_test_id("session-status")).to_have_text("completed")
    expect(page.get_by_test_id("tab-retry")).to_be_visible()


def test_the_built_in_forms_follow_their_schemas(page: Page, server: Server) -> None:
    """Fork keeps its checkpointed steps and hand-off its shipped schedules; their fields
    are marked and explained as the request schemas say, and a hand-off with a schedule
    written as JSON runs (one whose stages are wrong is refused next to its field)."""
    root = server.generate(steps=12, prompt="handed bands")["session_id"]
    bodies = sent_bodies(page, f"/api/sessions/{root}/hand-off")
    open_ui(page, server, f"#/session/{root}")
    expect(page.get_by_test_id("session-status")).to_have_text("completed")

    fork = page.get_by_test_id("op-form-fork")
    expect(fork).to_be_visible()  # the first tab
    step = fork.locator('[data-op-field="step"]')
    expect(step.locator(".tag-required")).to_be_visible()  # the fork's step is required
    expect(step.locator(".field-help")).to_have_text("The step to branch at")
    expect(fork.get_by_test_id("fork-step").locator("option")).to_have_count(12)  # steps 0..11 of 12

    page.get_by_test_id("tab-resume").click()
    until = page.get_by_test_id("op-form-resume").locator('[data-op-field="until"]')
    expect(until.locator(".tag-required")).to_be_hidden()
    expect(until.locator(".field-help")).to_have_text("Stop at this step (default: the end)")
    expect(page.get_by_test_id("resume-until")).to_have_attribute("min", "0")

    page.get_by_test_id("tab-hand-off").click()
    form = page.get_by_test_id("op-form-hand-off")
    expect(form).to_be_visible()
    schedule = form.get_by_test_id("hand-off-schedule")
    expect(schedule.locator("option")).to_have_text([*server.api("GET", "/api/schedules"), "Custom config (JSON)"])
    expect(form.get_by_test_id("hand-off-schedule-json")).to_be_hidden()
    # Its overrides are no part of its own form: they come from the schema, as a JSON text area.
    overrides = form.get_by_test_id("op-hand-off-overrides")
    expect(overrides).to_have_js_property("tagName", "TEXTAREA")
    expect(form.get_by_test_id("field-overrides").locator(".field-help")).to_have_text(
        "Parameters the branch changes (prompt, ...)"
    )
    form.get_by_test_id("hand-off-step").select_option("6")
    schedule.select_option(label="Custom config (JSON)")
    config = form.get_by_test_id("hand-off-schedule-json")
    config.fill('{"stages": []}')
    form.get_by_test_id("hand-off-submit").click()
    expect(form.get_by_test_id("field-error-schedule")).to_have_text(
        "List should have at least 1 item after validation, not 0 (got [])"
    )
    expect(form.get_by_test_id("action-error")).to_contain_text("schedule.stages: List should have")
    config.fill('{"stages": [{"model": "toy"}, {"model": "toy", "guidance": 2}], "boundary": 0.5}')
    expect(form.get_by_test_id("field-error-schedule")).to_be_hidden()
    overrides.fill('{"prompt": "handed on"}')
    shot(page, "33-hand-off")
    form.get_by_test_id("hand-off-submit").click()
    card = page.locator(JOB_CARD).first
    expect(card.get_by_test_id("job-state")).to_have_text("succeeded")
    child = page.locator('[data-testid="tree-node"][data-relation="child"]')
    expect(child).to_have_count(1)
    expect(child).to_contain_text("handed on")
    assert bodies[-1] == {
        "step": 6,
        "schedule": {"stages": [{"model": "toy"}, {"model": "toy", "guidance": 2}], "boundary": 0.5},
        "overrides": {"prompt": "handed on"},
    }, bodies
    made = server.api("GET", f"/api/sessions/{child.get_attribute('data-session-id')}")
    assert made["parent_step"] == 6 and [s["guidance"] for s in made["doc"]["stages"]] == [None, 2], made
    shot(page, "34-hand-off-done")


def test_a_field_added_to_a_request_schema_appears_without_a_js_edit(page: Page, server: Server) -> None:
    """The fork's schema as a newer server might give it: a field more (``note``) and one
    less (``overrides``). The fork form shows the new field and not the prompt, and sends
    what the schema has; this server refuses the new field, next to it."""
    root = server.generate(steps=6, prompt="schema drift")["session_id"]

    def drifted(route: Route) -> None:
        response = route.fetch()
        ops = response.json()
        fork = next(op for op in ops if op["name"] == "fork")
        del fork["schema"]["properties"]["overrides"]
        fork["schema"]["properties"]["note"] = {
            "type": "string",
            "maxLength": 40,
            "description": "A note kept with the branch",
        }
        route.fulfill(response=response, json=ops)

    page.route("**/api/operations", drifted)
    bodies = sent_bodies(page, f"/api/sessions/{root}/fork")
    open_ui(page, server, f"#/session/{root}")
    form = page.get_by_test_id("op-form-fork")
    expect(form).to_be_visible()
    expect(page.get_by_test_id("fork-prompt")).to_be_hidden()
    note = form.get_by_test_id("op-fork-note")
    expect(note).to_have_attribute("maxlength", "40")
    expect(form.get_by_test_id("field-note").locator(".field-help")).to_have_text("A note kept with the branch")
    note.fill("for later")
    form.get_by_test_id("fork-submit").click()
    expect(form.get_by_test_id("field-error-note")).to_have_text("Extra inputs are not permitted")
    assert bodies == [{"step": 3, "note": "for later"}], bodies  # the middle step, and no overrides
    shot(page, "35-schema-drift")


def test_a_generic_form_has_a_control_for_every_kind_of_field(page: Page, server: Server) -> None:
    """A plugin's request with one field of each kind (the retry's schema as a newer
    plugin might give it): bounded numbers, a text, a switch, a choice, JSON for objects
    and arrays; each with its help. What is sent is what the fields hold, blanks left
    out; this server's retry refuses the fields it does not have, next to the one named."""
    root = server.generate(steps=6, prompt="every kind", seed=1)["session_id"]
    more = {
        "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5, "description": "How much"},
        "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "description": "A name"},
        "loop": {"type": "boolean", "default": False, "description": "Play it round"},
        "mode": {"enum": ["fast", "slow"], "type": "string", "default": "slow"},
        "overrides": {"type": "object", "additionalProperties": True, "description": "Parameters to change"},
        "frames": {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}], "default": None},
    }

    def extended(route: Route) -> None:
        response = route.fetch()
        ops = response.json()
        retry = next(op for op in ops if op["name"] == "retry")
        retry["schema"]["properties"].update(more)
        route.fulfill(response=response, json=ops)

    page.route("**/api/operations", extended)
    bodies = sent_bodies(page, f"/api/sessions/{root}/retry")
    open_ui(page, server, f"#/session/{root}")
    page.get_by_test_id("tab-retry").click()
    form = page.get_by_test_id("op-form-retry")
    kinds = form.locator("[data-field]").evaluate_all(
        "els => els.map(el => { const c = el.querySelector('input, select, textarea');"
        " return [el.dataset.field, c.tagName.toLowerCase(), c.type, c.getAttribute('min'), c.getAttribute('max')]; })"
    )
    assert sorted(kinds) == sorted(
        [
            ["seed", "input", "number", "0", None],
            ["ratio", "input", "number", None, "1"],
            ["label", "input", "text", None, None],
            ["loop", "input", "checkbox", None, None],
            ["mode", "select", "select-one", None, None],
            ["overrides", "textarea", "textarea", None, None],
            ["frames", "textarea", "textarea", None, None],
        ]
    ), kinds
    expect(form.get_by_test_id("field-ratio").locator(".field-help")).to_have_text(">0 \N{EN DASH} 1 · How much")
    expect(form.get_by_test_id("field-loop").locator(".field-help")).to_have_text("Play it round")
    expect(form.get_by_test_id("field-required")).to_have_count(1)  # the seed's only
    expect(form.get_by_test_id("op-retry-ratio")).to_have_value("0.5")
    form.get_by_test_id("op-retry-seed").fill("9")
    form.get_by_test_id("op-retry-overrides").fill('{"guidance": 2}')
    form.get_by_test_id("field-loop").locator(".switch").click()
    form.get_by_test_id("op-retry-frames").fill("[0, 4]")
    shot(page, "36-generic-form-kinds")
    form.get_by_test_id("op-submit").click()
    error = form.get_by_test_id("action-error")
    expect(error).to_contain_text("Extra inputs are not permitted")
    assert bodies == [
        {"seed": 9, "ratio": 0.5, "loop": True, "mode": "slow", "overrides": {"guidance": 2}, "frames": [0, 4]}
    ], bodies  # the blank label left out, the empty frames sent as given
    named = error.inner_text().split(":")[0]
    expect(form.get_by_test_id(f"field-error-{named}")).to_have_text("Extra inputs are not permitted")
    # JSON that does not parse is said before anything is sent.
    form.get_by_test_id("op-retry-frames").fill("[0,")
    form.get_by_test_id("op-submit").click()
    expect(form.get_by_test_id("field-error-frames")).to_have_text("not valid JSON")
    assert len(bodies) == 1
