"""Checks every model plugin must pass, run on its tiny variant.

Subclass :class:`PluginConformance` in a ``Test*`` class and set ``model``,
``params`` (small and fast) and ``bad_params``; pytest collects the inherited tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from arc_fabric_core.engine import Engine
from arc_fabric_core.errors import InputError, SessionError
from arc_fabric_core.model_cache import ModelCache
from arc_fabric_core.plugins import Plugins, get_plugins
from arc_fabric_core.store import SessionStore


class PluginConformance:
    #: Registered model name.
    model: ClassVar[str]
    #: Variant to test: the tiny one, so that the suite needs no weights.
    variant: ClassVar[str] = "tiny"
    #: Small parameters that run in seconds; must include at least 2 steps.
    params: ClassVar[dict[str, Any]] = {}
    #: (overrides, field) pairs: each override must be refused, naming ``field``.
    bad_params: ClassVar[list[tuple[dict[str, Any], str]]] = []
    #: An autoregressive model (it rewinds instead of editing): the edit test checks the refusal.
    autoregressive: ClassVar[bool] = False

    # -- fixtures

    @pytest.fixture(scope="class")
    def plugins(self) -> Plugins:
        """The plugins under test; override to register plugin objects by hand."""
        return get_plugins()

    @pytest.fixture(scope="class")
    def cache(self, plugins: Plugins) -> ModelCache:
        # One cache per class: the model loads once for the whole suite.
        return ModelCache(plugins)

    @pytest.fixture
    def engine(self, tmp_path: Path, plugins: Plugins, cache: ModelCache) -> Engine:
        return Engine(SessionStore(tmp_path / "store"), plugins=plugins, device="cpu", cache=cache)

    def _run(self, engine: Engine, **overrides: Any) -> torch.Tensor:
        session = engine.create(self.model, {**self.params, **overrides}, variant=self.variant)
        engine.run(session)
        return engine.final_latents(session)

    # -- the suite

    def test_registration(self, plugins: Plugins) -> None:
        spec = plugins.model(self.model)
        spec.variant(self.variant)
        schema = spec.params.model_json_schema()
        for name, field in spec.params.model_fields.items():
            assert not field.is_required(), f"parameter {name} needs a default"
            assert name in schema["properties"]
        described = spec.describe()
        assert described["name"] == self.model and described["params_schema"]["properties"]

    def test_deterministic(self, engine: Engine) -> None:
        first = self._run(engine)
        again = self._run(engine)
        assert torch.equal(first, again), "same seed must give bit-identical latents"
        other = self._run(engine, seed=int(self.params.get("seed", 0)) + 1)
        assert not torch.equal(first, other), "a different seed must change the result"

    def test_output_shapes(self, engine: Engine) -> None:
        session = engine.create(self.model, self.params, variant=self.variant)
        engine.run(session)
        p = session.params
        latents = engine.final_latents(session)
        space = session.ref.latent_space
        assert tuple(latents.shape) == (1, *space.latent_shape(p.num_frames, p.height, p.width))
        assert latents.dtype == torch.float32
        frames = engine.decode(session)
        assert tuple(frames.shape) == (p.num_frames, p.height, p.width, 3)
        assert frames.min() >= 0 and frames.max() <= 1

    def test_store_round_trip(self, engine: Engine, plugins: Plugins, cache: ModelCache) -> None:
        session = engine.create(self.model, self.params, variant=self.variant)
        engine.run(session)
        reopened = Engine(engine.store, plugins=plugins, device="cpu", cache=cache).open(session.id)
        assert reopened.doc.model_dump() == session.doc.model_dump()
        assert reopened.params == session.params
        assert torch.equal(engine.final_latents(reopened), session.latents)
        cond, _ = engine.store.read_tensors(session.id, reopened.doc.conditioning)
        assert cond.keys() == session.conditioning.keys()
        for key, value in cond.items():
            assert torch.equal(value, session.conditioning[key].cpu())

    def test_resume_equals_uninterrupted(self, engine: Engine, plugins: Plugins, cache: ModelCache) -> None:
        full = self._run(engine)
        steps = engine.create(self.model, self.params, variant=self.variant).params.steps
        assert steps >= 2, "conformance params need at least 2 steps"
        for k in sorted({1, steps // 2, steps - 1}):
            partial = engine.create(self.model, self.params, variant=self.variant)
            engine.run(partial, until=k)
            assert partial.doc.status == "paused" and partial.doc.step_index == k
            # A new engine knows nothing but the store, as after a crash.
            fresh = Engine(engine.store, plugins=plugins, device="cpu", cache=cache)
            resumed = fresh.resume(partial.id)
            assert resumed.doc.status == "completed"
            assert torch.equal(fresh.final_latents(resumed), full), f"resume at step {k} differs"

    def test_fork_without_overrides_equals_parent(self, engine: Engine) -> None:
        parent = engine.create(self.model, self.params, variant=self.variant)
        engine.run(parent)
        child = engine.fork(parent.id, step=parent.doc.total_steps // 2)
        engine.run(child)
        assert torch.equal(engine.final_latents(child), engine.final_latents(parent)), (
            "a plain fork must equal its parent"
        )

    def test_same_model_hybrid_equals_single_model(self, engine: Engine) -> None:
        from arc_fabric_core.hybrid import HybridSpec

        spec = HybridSpec(stages=[{"variant": self.variant}, {"variant": self.variant}], boundary=0.5)
        hybrid = engine.create(self.model, self.params, variant=self.variant, hybrid=spec)
        engine.run(hybrid)
        assert hybrid.stages[0].end not in (0, hybrid.doc.total_steps), "both stages must run"
        assert torch.equal(engine.final_latents(hybrid), self._run(engine)), (
            "a hybrid of one model must equal the single-model run"
        )

    def test_masked_edit_keeps_the_outside(self, engine: Engine) -> None:
        from arc_fabric_core.edit_mask import EditMask

        parent = engine.create(self.model, self.params, variant=self.variant)
        engine.run(parent)
        p = parent.params
        if self.autoregressive:
            with pytest.raises(SessionError, match="rewind it to a block"):
                engine.edit(parent.id, step=1)
            return
        # The left half of the frame, in every frame: outside it the source must survive bit for bit.
        edit = engine.edit(
            parent.id,
            step=p.steps // 2,
            overrides={"prompt": p.prompt + " at night", "seed": p.seed + 1},
            mask=EditMask(rect=(0, 0, p.width // 2, p.height)),
        )
        engine.run(edit)
        before, after = engine.final_latents(parent), engine.final_latents(edit)
        half = before.shape[-1] // 2
        assert torch.equal(after[..., half:], before[..., half:]), "outside the mask the source must stay"
        assert not torch.equal(after[..., :half], before[..., :half]), "inside the mask the edit must change it"

    def test_bad_input(self, engine: Engine) -> None:
        loads = engine.cache.loads
        before = engine.store.list_ids()
        for overrides, field in self.bad_params:
            with pytest.raises(InputError) as info:
                engine.create(self.model, {**self.params, **overrides}, variant=self.variant)
            assert info.value.field == field, f"{overrides} should name {field!r}, named {info.value.field!r}"
            assert field in str(info.value)
        with pytest.raises(InputError) as info:
            engine.create(self.model, {**self.params, "no_such_parameter": 1}, variant=self.variant)
        assert info.value.field == "no_such_parameter"
        with pytest.raises(InputError):
            engine.create("no-such-model", self.params)
        assert engine.cache.loads == loads, "bad input must be refused before any model loads"
        assert engine.store.list_ids() == before, "bad input must not create a session"
