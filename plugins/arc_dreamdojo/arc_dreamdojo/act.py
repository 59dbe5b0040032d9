"""act: one more chunk of a rollout, made from the 12 actions given (or the next 12 of
the session's dataset episode) — how a controller drives the world model step by step.

It is an extension by one chunk: a new session holding the rollout so far that runs
only the new chunk's steps. When the rollout ran here on the same warm model (a live
session) the new chunk starts from what that run left (its conditioning frame, decoded
and encoded once); otherwise it is made again from the latents, exactly. Either way it
equals the longer rollout made at once.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pydantic import Field

from arc_dreamdojo.spec import ACTIONS_PER_CHUNK, DreamDojoParams, embodiment_of
from arc_fabric_core.contract.capabilities import Capabilities
from arc_fabric_core.contract.command_line import Argument
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.inputs import load_input
from arc_fabric_core.contract.operations import Request
from arc_fabric_core.engine.planning import resolve_info
from arc_fabric_core.operations.extend import Extend, ExtendPlan


class ActRequest(Request):
    actions: Any = Field(
        None,
        description=(
            f"The chunk's {ACTIONS_PER_CHUNK} actions: rows of 384 numbers (the unified vector), "
            "or a local .npy/.safetensors/.json file"
        ),
    )
    from_dataset: bool = Field(False, description="Take the next 12 actions of the session's dataset episode")


class Act(Extend):
    name = "act"
    summary = "append one chunk made from 12 actions (a live rollout continues without recomputing)"
    Request = ActRequest
    cli_help = "one more chunk of a rollout from 12 actions (a new session)"
    cli_flags = {
        "actions": Argument(help="12 rows of 384 numbers as JSON, or a .npy/.safetensors/.json path"),
        "from_dataset": Argument(help="the next 12 actions of the session's dataset episode"),
    }

    def applies_to(self, capabilities: Capabilities) -> bool:
        return capabilities.extend and "actions" in capabilities.inputs

    def check(self, engine: Any, request: Any, session: str | None = None) -> ExtendPlan:
        assert session is not None
        if (request.actions is None) == (not request.from_dataset):
            raise InputError("actions", "give the chunk's actions, or from_dataset=true (not both)")
        if request.from_dataset:
            actions = next_dataset_actions(engine, session)
        else:
            actions = request.actions
            if isinstance(actions, str) and actions.lstrip().startswith("["):
                import json

                actions = json.loads(actions)  # JSON text from a command line
        rows = load_input(actions, "actions")
        if rows.ndim == 2 and rows.shape[0] != ACTIONS_PER_CHUNK:
            raise InputError("actions", f"one chunk is {ACTIONS_PER_CHUNK} rows of 384; got {tuple(rows.shape)}")
        doc = engine.store.load_doc(session)
        if rows.ndim == 2 and rows.shape[1] == 384:
            from arc_dreamdojo.plugin import check_embodiment

            check_embodiment(rows, embodiment_of(doc.model.variant), field="actions")
        return self.plan(engine, session, 1, None, {"actions": rows})

    def cli_done(self, session: Any, source_id: str | None, done: Any = None) -> str:
        chunk = (len(session.doc.passes) or 1) - 1
        steps = session.doc.total_steps - session.step_index
        return f"act: {session.id} from {source_id}, chunk {chunk} ({steps} steps)"


def next_dataset_actions(engine: Any, session_id: str) -> Any:
    """The 12 actions that follow the session's rollout in its dataset episode."""
    from arc_dreamdojo.dataset import LeRobotDataset

    doc = engine.store.load_doc(session_id)
    ref = resolve_info(engine.plugins, doc.model)
    params = ref.params(doc.params)
    assert isinstance(params, DreamDojoParams)
    if params.dataset is None:
        raise InputError("from_dataset", f"session {doc.id} was not made from a dataset sample: give its actions")
    stats = Path(params.stats) if params.stats else None
    dataset = LeRobotDataset(Path(params.dataset), stats=stats, embodiment=embodiment_of(ref.variant.name))
    window = rollout_window(engine, doc, dataset, params.chunks + 1)
    # The same window one chunk longer: its first 12k actions are the rollout's (each group's
    # deltas are taken against rows the shorter window has too), the last 12 the next chunk's.
    try:
        sample = dataset.load(window)
    except InputError as exc:
        raise InputError(
            "from_dataset", f"episode {window.episode_index} has no next 12 actions: {exc.message}"
        ) from None
    return sample.actions[params.chunks * ACTIONS_PER_CHUNK :]


def origin(store: Any, doc: Any) -> Any:
    """The session whose parameters picked the rollout's dataset window: the first of its
    lineage (act makes extensions, a fork keeps the length), since the window ``sample``
    names among those of a longer rollout may be another one."""
    while doc.parent:
        doc = store.load_doc(doc.parent)
    return doc


def rollout_window(engine: Any, doc: Any, dataset: Any, chunks: int) -> Any:
    """The dataset window of ``doc``'s rollout (as its origin picked it), ``chunks`` chunks long."""
    first = origin(engine.store, doc)
    params = resolve_info(engine.plugins, first.model).params(first.params)
    windows = dataset.eval_windows(params.chunks, params.samples_per_task)
    if not 0 <= params.sample < len(windows):
        raise InputError("sample", f"sample {params.sample} is out of range: the dataset has {len(windows)} windows")
    return dataclasses.replace(windows[params.sample], chunks=chunks)
