"""Checks every model plugin must pass, run on its tiny variant.

Subclass :class:`PluginConformance` in a ``Test*`` class and set ``model``,
``params`` (small and fast) and ``bad_params``; pytest collects the inherited tests.

To register plugin objects by hand, override the class-scoped ``plugins`` fixture in the
same form as here, a classmethod under ``@pytest.fixture(scope="class")`` (pytest 9.1
deprecates class-scoped fixtures written as instance methods; pytest 10 drops them)::

    @pytest.fixture(scope="class")
    @classmethod
    def plugins(cls) -> Plugins:
        plugins = Plugins(load_entrypoints=False)
        plugins.register(my_plugin, name="mine")
        return plugins

A failure says what was expected and what came: shapes, dtypes, seeds, steps, and for
tensors that should be equal how many values differ and by how much.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.dispatch.plugins import Plugins, get_plugins
from arc_fabric_core.engine.facade import Engine, Session
from arc_fabric_core.jobs import runtime_setup
from arc_fabric_core.runtime.model_cache import ModelCache


def mismatch(expected: torch.Tensor, got: torch.Tensor) -> str:
    """How two tensors that should be bit-identical differ: shape and dtype, else how many
    values differ and the largest difference."""
    if expected.shape != got.shape or expected.dtype != got.dtype:
        return f"expected {tuple(expected.shape)} {expected.dtype}, got {tuple(got.shape)} {got.dtype}"
    diff = (expected.detach().cpu().double() - got.detach().cpu().double()).abs()
    differ = int((diff != 0).sum())
    largest = diff.max().item() if diff.numel() else 0.0
    return f"{differ} of {diff.numel()} values differ (max |diff| {largest:.3g}), shape {tuple(got.shape)} {got.dtype}"


def _runtime(store_dir: Path) -> runtime_setup.RuntimeSettings:
    """What the suite runs with: the CPU, the default checkpoint policy (every step)."""
    return runtime_setup.RuntimeSettings(store_dir=store_dir, device="cpu")


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

    # Class-scoped fixtures are classmethods: pytest runs them once per class, not per
    # test instance (an instance method there is deprecated in pytest 9.1, gone in 10).

    @pytest.fixture(scope="class")
    @classmethod
    def plugins(cls) -> Plugins:
        """The plugins under test; override (as a classmethod) to register plugin objects by hand."""
        return get_plugins()

    @pytest.fixture(scope="class")
    @classmethod
    def cache(cls, plugins: Plugins) -> ModelCache:
        # One cache per class: the model loads once for the whole suite.
        return runtime_setup.build_cache(runtime_setup.RuntimeSettings(device="cpu"), plugins)

    @pytest.fixture
    def engine(self, tmp_path: Path, plugins: Plugins, cache: ModelCache) -> Engine:
        return runtime_setup.build_engine(_runtime(tmp_path / "store"), plugins, cache)

    def _completed(self, engine: Engine, **overrides: Any) -> Session:
        session = engine.create(self.model, {**self.params, **overrides}, variant=self.variant)
        engine.run(session)
        return session

    def _run(self, engine: Engine, **overrides: Any) -> torch.Tensor:
        return engine.final_latents(self._completed(engine, **overrides))

    def _refused(self, engine: Engine, overrides: dict[str, Any], model: str | None = None) -> InputError:
        """The InputError that creating a session with ``overrides`` raises; fails if none does."""
        model = model or self.model
        try:
            engine.create(model, {**self.params, **overrides}, variant=self.variant)
        except InputError as error:
            return error
        pytest.fail(f"{model}: expected an InputError for {overrides}, the session was created")

    # -- the suite

    def test_registration(self, plugins: Plugins) -> None:
        spec = plugins.model(self.model)
        spec.variant(self.variant)
        schema = spec.params.model_json_schema()
        for name, field in spec.params.model_fields.items():
            assert not field.is_required(), f"{self.model}: expected a default for parameter {name!r}, it is required"
            assert name in schema["properties"], (
                f"{self.model}: expected parameter {name!r} in the JSON schema, got {sorted(schema['properties'])}"
            )
        described = spec.describe()
        assert described["name"] == self.model, f"describe() names {described['name']!r}, expected {self.model!r}"
        assert described["params_schema"]["properties"], f"{self.model}: describe() has an empty params schema"

    def test_deterministic(self, engine: Engine) -> None:
        session = self._completed(engine)
        seed = session.params.seed  # the model's default when params leave it out
        first = engine.final_latents(session)
        again = self._run(engine)
        assert torch.equal(first, again), f"seed {seed} twice: expected bit-identical latents, {mismatch(first, again)}"
        other = self._run(engine, seed=seed + 1)
        assert not torch.equal(first, other), (
            f"seeds {seed} and {seed + 1}: expected different latents, got identical {tuple(first.shape)}"
        )

    def test_output_shapes(self, engine: Engine) -> None:
        session = engine.create(self.model, self.params, variant=self.variant)
        engine.run(session)
        p = session.params
        latents = engine.final_latents(session)
        space = session.ref.latent_space
        expected = (1, *space.latent_shape(p.num_frames, p.height, p.width))
        size = f"{p.num_frames} frames of {p.width}x{p.height}"
        assert tuple(latents.shape) == expected, f"{size}: expected latents {expected}, got {tuple(latents.shape)}"
        assert latents.dtype == torch.float32, f"expected float32 latents, got {latents.dtype}"
        frames = engine.decode(session)
        expected = (p.num_frames, p.height, p.width, 3)
        assert tuple(frames.shape) == expected, f"{size}: expected decoded frames {expected}, got {tuple(frames.shape)}"
        low, high = frames.min().item(), frames.max().item()
        assert low >= 0 and high <= 1, f"expected decoded frames in [0, 1], got values in [{low:.3g}, {high:.3g}]"

    def test_store_round_trip(self, engine: Engine, plugins: Plugins, cache: ModelCache) -> None:
        session = engine.create(self.model, self.params, variant=self.variant)
        engine.run(session)
        reopened = runtime_setup.build_engine(_runtime(engine.store.root), plugins, cache, store=engine.store)
        reopened = reopened.open(session.id)
        saved, read = session.doc.model_dump(), reopened.doc.model_dump()
        changed = sorted(k for k in saved.keys() | read.keys() if saved.get(k) != read.get(k))
        assert read == saved, (
            f"the reopened document differs in {changed}: "
            f"expected {[saved.get(k) for k in changed]}, got {[read.get(k) for k in changed]}"
        )
        assert reopened.params == session.params, f"expected params {session.params!r}, reopened {reopened.params!r}"
        latents = engine.final_latents(reopened)
        assert torch.equal(latents, session.latents), f"reopened latents: {mismatch(session.latents, latents)}"
        cond, _ = engine.store.read_tensors(session.id, reopened.doc.conditioning)
        assert cond.keys() == session.conditioning.keys(), (
            f"expected conditioning {sorted(session.conditioning)}, read back {sorted(cond)}"
        )
        for key, value in cond.items():
            expected = session.conditioning[key].cpu()
            assert torch.equal(value, expected), f"conditioning {key!r} read back: {mismatch(expected, value)}"

    def test_resume_equals_uninterrupted(self, engine: Engine, plugins: Plugins, cache: ModelCache) -> None:
        full = self._run(engine)
        steps = engine.create(self.model, self.params, variant=self.variant).params.steps
        assert steps >= 2, f"conformance params need at least 2 steps, these give {steps}"
        for k in sorted({1, steps // 2, steps - 1}):
            partial = engine.create(self.model, self.params, variant=self.variant)
            engine.run(partial, until=k)
            doc = partial.doc
            assert (doc.status, doc.step_index) == ("paused", k), (
                f"run until step {k} of {steps}: expected paused at {k}, got {doc.status} at {doc.step_index}"
            )
            # A new engine knows nothing but the store, as after a crash.
            fresh = runtime_setup.build_engine(_runtime(engine.store.root), plugins, cache, store=engine.store)
            resumed = fresh.resume(partial.id)
            assert resumed.doc.status == "completed", (
                f"resumed from step {k}: expected completed, got {resumed.doc.status} at step {resumed.doc.step_index}"
            )
            latents = fresh.final_latents(resumed)
            assert torch.equal(latents, full), (
                f"resumed from step {k} of {steps}: expected the uninterrupted latents, {mismatch(full, latents)}"
            )

    def test_fork_without_overrides_equals_parent(self, engine: Engine) -> None:
        parent = engine.create(self.model, self.params, variant=self.variant)
        engine.run(parent)
        step = parent.doc.total_steps // 2
        child = engine.fork(parent.id, step=step)
        engine.run(child)
        expected, got = engine.final_latents(parent), engine.final_latents(child)
        assert torch.equal(got, expected), (
            f"a plain fork at step {step} of {parent.doc.total_steps}: expected its parent's latents, "
            f"{mismatch(expected, got)}"
        )

    def test_same_model_hybrid_equals_single_model(self, engine: Engine) -> None:
        from arc_fabric_core.engine.hybrid import HybridSpec

        spec = HybridSpec(stages=[{"variant": self.variant}, {"variant": self.variant}], boundary=0.5)
        hybrid = engine.create(self.model, self.params, variant=self.variant, hybrid=spec)
        engine.run(hybrid)
        end, total = hybrid.stages[0].end, hybrid.doc.total_steps
        assert 0 < end < total, f"boundary 0.5: expected the first stage to end inside 0..{total}, it ends at {end}"
        single, got = self._run(engine), engine.final_latents(hybrid)
        assert torch.equal(got, single), (
            f"a hybrid of one model (stage 1 ends at step {end} of {total}): expected the single-model "
            f"latents, {mismatch(single, got)}"
        )

    def test_masked_edit_keeps_the_outside(self, engine: Engine) -> None:
        from arc_fabric_core.engine.edit_mask import EditMask

        parent = engine.create(self.model, self.params, variant=self.variant)
        engine.run(parent)
        p = parent.params
        if self.autoregressive:
            with pytest.raises(SessionError, match="rewind it to a block"):
                engine.edit(parent.id, step=1)
            return
        # The left half of the frame, in every frame: outside it the source must survive bit for bit.
        step, rect = p.steps // 2, (0, 0, p.width // 2, p.height)
        edit = engine.edit(
            parent.id,
            step=step,
            overrides={"prompt": p.prompt + " at night", "seed": p.seed + 1},
            mask=EditMask(rect=rect),
        )
        engine.run(edit)
        before, after = engine.final_latents(parent), engine.final_latents(edit)
        half = before.shape[-1] // 2
        what = f"edit at step {step} with seed {p.seed + 1} (source seed {p.seed}), mask {rect}"
        assert torch.equal(after[..., half:], before[..., half:]), (
            f"{what}: expected the right half (latent columns {half}:) unchanged, "
            f"{mismatch(before[..., half:], after[..., half:])}"
        )
        assert not torch.equal(after[..., :half], before[..., :half]), (
            f"{what}: expected the masked half (latent columns :{half}) to change, it is identical to the source"
        )

    def test_bad_input(self, engine: Engine) -> None:
        loads = engine.cache.loads
        before = engine.store.list_ids()
        for overrides, field in [*self.bad_params, ({"no_such_parameter": 1}, "no_such_parameter")]:
            error = self._refused(engine, overrides)
            assert error.field == field, f"{overrides}: expected an error naming {field!r}, it named {error.field!r}"
            assert field in str(error), f"{overrides}: expected {field!r} in the message, got {str(error)!r}"
        self._refused(engine, {}, model="no-such-model")
        assert engine.cache.loads == loads, (
            f"bad input must be refused before any model loads: expected {loads} loads, got {engine.cache.loads}"
        )
        created = sorted(set(engine.store.list_ids()) - set(before))
        assert engine.store.list_ids() == before, f"bad input must not create a session, created {created}"
