"""The engine's loop: events, pause on Ctrl-C, bounds."""

from __future__ import annotations

import pytest
import torch

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.engine.facade import Engine, StepEvent

PARAMS = {"num_frames": 2, "height": 8, "width": 8, "steps": 5}


def test_every_step_emits_an_event(toy_engine: Engine) -> None:
    events: list[StepEvent] = []
    session = toy_engine.create("toy", PARAMS)
    toy_engine.run(session, listeners=[events.append])
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert all(e.total == 5 and e.session_id == session.id for e in events)
    assert [e.timestep for e in events] == [float(t) for t in session.schedule.timesteps]
    assert events[-1].eta_seconds == 0
    assert all(e.elapsed_seconds >= e.step_seconds >= 0 for e in events)


def test_ctrl_c_pauses_at_the_last_checkpoint_and_resume_is_exact(toy_engine: Engine, toy_plugins) -> None:
    full = toy_engine.create("toy", PARAMS)
    toy_engine.run(full)

    class CtrlC:
        @hookimpl(wrapper=True)
        def arc_denoise_step(self, step):
            if step.index == 3:
                raise KeyboardInterrupt
            return (yield)

    interrupter = CtrlC()
    toy_plugins.register(interrupter, name="ctrl-c")
    session = toy_engine.create("toy", PARAMS)
    with pytest.raises(KeyboardInterrupt):
        toy_engine.run(session)
    doc = toy_engine.store.load_doc(session.id)
    assert doc.status == "paused" and doc.step_index == 3 and doc.error is None
    toy_plugins.unregister(interrupter)

    fresh = Engine(toy_engine.store, plugins=toy_plugins, device="cpu")
    resumed = fresh.resume(session.id)
    assert torch.equal(fresh.final_latents(resumed), toy_engine.final_latents(full))


def test_run_until_out_of_range_is_refused(toy_engine: Engine) -> None:
    session = toy_engine.create("toy", PARAMS)
    with pytest.raises(InputError, match="until"):
        toy_engine.run(session, until=6)
    assert toy_engine.cache.loads == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"device": "tpu9"}, "device"), ({"device": "cuda:0"}, "device"), ({"dtype": "float7"}, "dtype")],
)
def test_device_and_dtype_are_validated(toy_engine: Engine, kwargs: dict, field: str) -> None:
    if kwargs.get("device", "").startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError) as info:
        Engine(toy_engine.store, plugins=toy_engine.plugins, **kwargs)
    assert info.value.field == field


def test_checkpoint_policy_is_validated(toy_engine: Engine) -> None:
    with pytest.raises(InputError, match="checkpoint_every"):
        Engine(toy_engine.store, plugins=toy_engine.plugins, checkpoint_every=-1)
    with pytest.raises(InputError, match="checkpoint_keep"):
        Engine(toy_engine.store, plugins=toy_engine.plugins, checkpoint_keep=-1)


def test_checkpoint_every_zero_writes_no_checkpoint(toy_engine: Engine) -> None:
    engine = Engine(toy_engine.store, plugins=toy_engine.plugins, device="cpu", checkpoint_every=0)
    session = engine.create("toy", PARAMS)
    engine.run(session)
    doc = engine.store.load_doc(session.id)
    assert doc.checkpoints == [] and doc.status == "completed"
    assert not (engine.store.session_dir(session.id) / "checkpoints").exists()
    assert torch.equal(engine.final_latents(session), session.latents)


def test_stop_pauses_exactly_at_the_step_even_between_checkpoints(toy_engine: Engine) -> None:
    engine = Engine(toy_engine.store, plugins=toy_engine.plugins, device="cpu", checkpoint_every=4)
    session = engine.create("toy", PARAMS)
    engine.run(session, stop=lambda: session.step_index >= 2)
    doc = engine.store.load_doc(session.id)
    assert doc.status == "paused" and doc.step_index == 2
    assert [c.step for c in doc.checkpoints] == [0, 2]
    engine.resume(session.id)
    full = toy_engine.create("toy", PARAMS)
    toy_engine.run(full)
    assert torch.equal(engine.final_latents(session), toy_engine.final_latents(full))
