"""Checkpoints: when to write them (one policy), what they hold, and reading them back.

A checkpoint is the whole loop state after a step: the latents, the session's noise
generator and torch's CPU generator, the scheduler's internals (UniPC's history of model
outputs), and the plugins' checkpointable state (``StepContext.checkpointed``). Restoring
it and running on gives, bit for bit, what running on without stopping gives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.contract.schedule import Schedule
from arc_fabric_core.engine.host_copy import copies_done, to_host
from arc_fabric_core.engine.loop import StepDone
from arc_fabric_core.engine.scheduler_state import capture, restore
from arc_fabric_core.engine.state import Session
from arc_fabric_core.store.files import DOC_COPY_KEY, CheckpointWriter, SessionStore, add_checkpoint, checkpoint_name
from arc_fabric_core.store.session import SessionDoc, step_ranges

log = logging.getLogger("arc_fabric")

# Tensor names of the plugins' checkpointable state inside a checkpoint file.
PLUGIN_STATE_PREFIX = "plugin_state."


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a run writes a checkpoint, and which ones the store keeps.

    ``every`` k steps (the first and last step always are, and every stage or pass
    boundary; 0 = none at all: a batch run that cannot be resumed or forked); ``keep``
    the newest n (0 = all, the default: any step can be forked); ``keep_steps`` are kept
    whatever n says, and so are a branch's first step and the boundaries.
    """

    every: int = 1
    keep: int = 0
    keep_steps: frozenset[int] = frozenset()

    @classmethod
    def checked(cls, every: int, keep: int, keep_steps: Iterable[int] = ()) -> CheckpointPolicy:
        if every < 0:
            raise InputError("checkpoint_every", f"must be >= 1 (or 0: no checkpoints at all), got {every}")
        if keep < 0:
            raise InputError("checkpoint_keep", f"must be >= 0 (0 keeps all), got {keep}")
        steps = frozenset(int(s) for s in keep_steps)
        if any(s < 0 for s in steps):
            raise InputError("checkpoint_keep_steps", f"steps must be >= 0, got {sorted(steps)}")
        return cls(every, keep, steps)

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def due(self, session: Session) -> bool:
        """After a step: whether this step is written."""
        step = session.step_index
        return self.enabled and (step % self.every == 0 or session.done or step in session.boundaries())

    def due_on_stop(self, session: Session) -> bool:
        """A run paused here (not at its end) is written here, unless it just was: a
        resume goes on from exactly where it stopped."""
        return self.enabled and not self.due(session)

    def kept(self, session: Session) -> frozenset[int]:
        # A fork or edit always keeps its first own checkpoint: it is where the branch starts;
        # hand-offs are kept too, so that a fork can give the rest to another model.
        return self.keep_steps | {session.doc.parent_step or 0} | session.boundaries()


def capture_state(session: Session) -> tuple[dict[str, torch.Tensor], dict[str, str], torch.cuda.Event | None]:
    """The loop state now, copied to the host (tensors and metadata of a checkpoint
    file), and the event to wait on before reading the copies (None on the CPU)."""
    assert session.latents is not None and session.schedule is not None
    sched_tensors, sched_json = capture(session.schedule.scheduler, to_host)
    tensors = {
        "latents": to_host(session.latents, torch.float32),
        "rng.generator": session.generator.get_state(),
        "rng.torch_cpu": torch.get_rng_state(),
        **sched_tensors,
        **{PLUGIN_STATE_PREFIX + key: to_host(value) for key, value in session.plugin_state.items()},
    }
    sources = [session.latents, *session.plugin_state.values()]
    metadata = {
        "step": str(session.step_index),
        "pass": str(session.pass_index),
        "scheduler_state": sched_json,
        "scheduler_class": type(session.schedule.scheduler).__name__,
        "scheduler_config": config_json(session.schedule.scheduler),
    }
    return tensors, metadata, copies_done(sources)


class Checkpointer:
    """Writes checkpoints as the policy says (serialised on the session's writer thread)."""

    def __init__(self, policy: CheckpointPolicy, store: SessionStore, writer: CheckpointWriter) -> None:
        self.policy, self.store, self.writer = policy, store, writer

    def write(self, session: Session) -> None:
        """Snapshot the loop state now; serialise and write it on the writer thread."""
        if not self.policy.enabled:
            return
        tensors, metadata, copied = capture_state(session)
        step, doc, keep, kept = session.step_index, session.doc, self.policy.keep, self.policy.kept(session)
        store = self.store

        def write() -> list[str]:
            if copied is not None:
                copied.synchronize()  # here, on the writer's thread: the loop never waits for it
            # A copy of the document rides along: `sessions repair` rebuilds a damaged one from it.
            copy = {DOC_COPY_KEY: doc.model_dump_json(exclude={"checkpoints"})}
            record = store.write_tensors(doc.id, checkpoint_name(step), tensors, {**metadata, **copy})
            doc.step_index = step
            return add_checkpoint(doc, record, step, keep, kept)  # removed once the doc is saved

        self.writer.submit(write)

    def after_step(self, done: StepDone) -> None:
        if self.policy.due(done.session):
            self.write(done.session)

    def on_stop(self, session: Session) -> None:
        if self.policy.due_on_stop(session):
            self.write(session)  # pause exactly here, not at the last checkpoint


def read_checkpoint(
    store: SessionStore, doc: SessionDoc, at: int | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The newest checkpoint whose checksum holds (or the one at step ``at``)."""
    bad: list[int] = []
    first_error = ""
    records = doc.checkpoints if at is None else [c for c in doc.checkpoints if c.step == at]
    for record in reversed(records):
        try:
            tensors, metadata = store.read_tensors(doc.id, record)
            break
        except SessionError as exc:
            bad.append(record.step)
            first_error = first_error or str(exc)
    else:
        if not bad:
            raise SessionError(f"session {doc.id}: no readable checkpoint")
        raise SessionError(f"{lost(doc.id, bad, first_error)}; no usable checkpoint is left")
    if bad:
        log.warning("%s; resuming from step %s", lost(doc.id, bad, first_error), metadata["step"])
    return tensors, metadata


def apply_state(
    session: Session,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    schedule: Schedule,
    label: str,
    device: torch.device,
) -> None:
    """Put a checkpoint's loop state into ``session``, with ``schedule`` fresh from the
    model (``label``) of the stage at the checkpoint's step."""
    step = int(metadata["step"])
    config = metadata.get("scheduler_config")
    if config is not None and not same_config(config, config_json(schedule.scheduler)):
        raise SessionError(
            f"session {session.id}: {label} builds its scheduler with another configuration than the one "
            f"checkpointed at step {step}; the session cannot continue exactly"
        )
    restore(schedule.scheduler, tensors, metadata["scheduler_state"], device)
    session.schedule = schedule
    session.pass_index = int(metadata.get("pass", "0"))
    session.latents = tensors["latents"].to(device)
    session.generator = torch.Generator("cpu")
    session.generator.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch_cpu"])
    session.plugin_state = {
        key.removeprefix(PLUGIN_STATE_PREFIX): value.to(device)
        for key, value in tensors.items()
        if key.startswith(PLUGIN_STATE_PREFIX)
    }
    session.step_index = step


def lost(session_id: str, steps: list[int], newest_error: str) -> str:
    """Unreadable checkpoints in one line: the store's reason for one, else their steps as
    ranges ([16, 15, 14, 3] -> 3, 14-16) and the newest one's reason — a store that lost
    its files would otherwise repeat the same reason once per file."""
    if len(steps) == 1:
        return newest_error
    text = step_ranges(steps)
    reason = newest_error.removeprefix(f"session {session_id}: ")
    return f"session {session_id}: the checkpoints at steps {text} are missing or corrupt (the newest: {reason})"


def config_json(scheduler: Any) -> str:
    """A scheduler's configuration as canonical JSON (what a stage model must agree on).

    diffusers' bookkeeping keys (``_use_default_values``, ``_class_name``...) are left
    out: the first is a set turned list, in an order that changes from process to process.
    """
    config = getattr(scheduler, "config", None)
    public = {k: v for k, v in dict(config).items() if not k.startswith("_")} if config is not None else {}
    return json.dumps(public, sort_keys=True, default=str)


def same_config(stored: str, current: str) -> bool:
    """Whether a checkpointed scheduler configuration (possibly written with the
    bookkeeping keys) is the one ``current`` describes."""
    try:
        old = {k: v for k, v in json.loads(stored).items() if not k.startswith("_")}
    except (ValueError, AttributeError):
        return False
    return json.dumps(old, sort_keys=True, default=str) == current
