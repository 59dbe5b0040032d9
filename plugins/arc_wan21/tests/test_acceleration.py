"""Attention kernels and regional compilation on the tiny Wan: every backend this CPU has
stays within a stated tolerance of native SDPA, ``auto`` falls back cleanly and is
remembered, a backend that is not installed is refused before anything is written, and a
compiled model stays compiled (and warm) across sessions."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime import acceleration
from arc_fabric_core.store.files import SessionStore

# fp32 on the CPU: the math and flash kernels sum in another order than SDPA's default
# (measured max |diff| of the final latents ~1e-6 after 4 CFG steps).
TOLERANCE = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(autouse=True)
def _own_attention_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARC_FABRIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(acceleration, "_remembered", {})


def _run(engine: Engine, params: dict) -> torch.Tensor:
    session = engine.create("wan21", params, variant="tiny")
    engine.run(session)
    return engine.final_latents(session)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path / "store"), device="cpu")


def test_every_backend_this_cpu_has_stays_near_native(
    engine: Engine, small: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    calls: dict[str, int] = {}

    def counted(name: str):
        original = _AttentionBackendRegistry._backends[AttentionBackendName(name)]

        def backend(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        backend.__signature__ = __import__("inspect").signature(original)
        return backend

    native = _run(engine, small)
    ran = []
    for name in ("_native_math", "_native_flash", "flex"):
        if acceleration.backend_usable(name) is not None:
            continue
        ran.append(name)
        monkeypatch.setitem(_AttentionBackendRegistry._backends, AttentionBackendName(name), counted(name))
        latents = _run(engine, {**small, "attention": name})
        assert calls.get(name, 0) > 0, f"{name} was never called"
        assert torch.allclose(latents, native, **TOLERANCE), (name, (latents - native).abs().max())
    assert ran, "no backend beside native runs on this CPU"


def test_a_backend_that_is_not_installed_is_refused_before_anything_is_written(engine: Engine, small: dict) -> None:
    missing = next(n for n in ("flash", "_flash_3", "sage", "xformers") if acceleration.backend_usable(n) is not None)
    with pytest.raises(InputError) as info:
        engine.create("wan21", {**small, "attention": missing}, variant="tiny")
    assert info.value.field == "attention" and "cannot run here" in info.value.message
    assert "auto" in info.value.message
    assert not list(engine.store.root.glob("*/session.json"))


def test_auto_falls_back_past_what_is_missing_and_is_remembered(
    engine: Engine, small: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Kernels this CPU lacks come first: auto must skip them and land on one that runs.
    monkeypatch.setitem(acceleration.AUTO_CANDIDATES, "cpu", ("flash", "sage", "_native_math", "native"))
    with caplog.at_level(logging.INFO, logger="arc_fabric"):
        session = engine.create("wan21", {**small, "attention": "auto"}, variant="tiny")
        engine.run(session)
    chosen = engine.store.load_doc(session.id).attention_backends
    assert next(iter(chosen.values())) in ("_native_math", "native")
    assert "auto chose" in caplog.text
    remembered = (tmp_path / "cache" / "attention.json").read_text()
    assert next(iter(chosen.values())) in remembered
    # A second session asks nobody: the answer is remembered (no new probe is logged).
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="arc_fabric"):
        _run(engine, {**small, "attention": "auto"})
    assert "auto chose" not in caplog.text


def test_what_auto_chose_is_in_the_job_log(engine: Engine, small: dict) -> None:
    from arc_fabric_core.jobs.log import job_log

    lines: list[str] = []
    with job_log(lines.append):
        _run(engine, {**small, "attention": "auto"})
    assert any(line.startswith("attention: auto chose ") for line in lines), lines


def test_a_resume_with_auto_runs_the_kernel_it_ran_with(engine: Engine, small: dict, tmp_path: Path) -> None:
    full = _run(engine, {**small, "attention": "_native_math"})
    session = engine.create("wan21", {**small, "attention": "auto"}, variant="tiny")
    doc = engine.store.load_doc(session.id)
    label = session.ref.label
    # What an earlier run of this session recorded wins over what auto would pick now.
    doc.attention_backends[label] = "_native_math"
    engine.store.save_doc(doc)
    session = engine.open(session.id)
    engine.run(session, until=2)
    resumed = Engine(SessionStore(tmp_path / "store"), device="cpu").resume(session.id)
    assert resumed.doc.attention_backends[label] == "_native_math"
    assert torch.equal(engine.final_latents(session.id), full)


@pytest.mark.slow
def test_compiled_blocks_stay_compiled_across_sessions(
    engine: Engine, small: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # aot_eager traces the blocks whole (fullgraph) without generating C++: the plumbing
    # is what is tested here; the GPU benchmark measures inductor.
    monkeypatch.setenv("ARC_FABRIC_COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    eager = _run(engine, small)
    with caplog.at_level(logging.INFO, logger="arc_fabric"):
        compiled = _run(engine, {**small, "compile": True})
        again = _run(engine, {**small, "compile": True, "seed": 8})
        plain = _run(engine, small)  # the same warm, compiled model, run eagerly
    assert torch.allclose(compiled, eager, **TOLERANCE), (compiled - eager).abs().max()
    assert not torch.equal(again, compiled)  # another seed really ran
    assert torch.equal(plain, eager)
    assert caplog.text.count("compiles WanTransformer3DModel") == 1  # once for the warm model
    assert caplog.text.count("compiled for latents") == 1  # one shape: one compilation
    transformer = next(
        iter(acceleration.diffusers_models(engine.cache.get(engine.resolve("wan21", "tiny"), "cpu", "auto")))
    )
    assert getattr(transformer, acceleration.COMPILED)
