"""Operations on sessions, each defined once.

An operation (generate, resume, fork, edit, extend, rewind, hand-off, decode — or one a
plugin adds through ``arc_register_operations``) is one class holding:

- ``Request``: its request as a pydantic model — the body of its API route, the payload
  of its job kind, the fields of its CLI subcommand and of the UI's form;
- ``check(engine, request)``: everything the engine would refuse, before any write or
  compute, returning the operation's plan;
- ``create(engine, plan)``: the session the run works on (a child written to the store,
  or the session itself for a resume);
- ``start(run)``: the first state of a session this operation made, when its first run
  begins (fresh noise, an edit's re-noised source, an extension's parent video). A
  session with a checkpoint starts from it instead, whatever made it;
- ``execute(engine, plan, session, say)``: for one that runs no loop (``runs = False``:
  a decode), what it does instead, where the model is;
- its command-line spelling (:class:`arc_fabric_core.contract.command_line.CommandLine`):
  the arguments of its ``sessions`` subcommand and its ``jobs submit`` keys, derived from
  its request's fields unless it spells them otherwise.

The registry (:meth:`arc_fabric_core.dispatch.plugins.Plugins.operations`) holds the
built-in ones and the plugins'; the CLI, the API, the job queue and the UI are derived
from it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from arc_fabric_core.contract.command_line import CommandLine
from arc_fabric_core.contract.errors import ArcFabricError, InputError

if TYPE_CHECKING:
    from arc_fabric_core.contract.capabilities import Capabilities


class Request(BaseModel):
    """Base of an operation's request: unknown fields are refused by name, and no float
    may be infinite or NaN (JSON's Infinity and NaN)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class Executed:
    """What an operation that runs no loop (``runs = False``) did: the step of its
    session that its result shows (a decode: the step its video shows)."""

    step: int


class OperationSpec(CommandLine, ABC):
    """One operation. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Request: ClassVar[type[BaseModel]] = Request
    # The ``SessionDoc.operation`` of the sessions it creates (None: it creates none).
    makes: ClassVar[str | None] = None
    # The capability a model must have for it (``Capabilities.operations``): the name itself by default.
    needs: ClassVar[str | None] = None
    # Whether its result is a run of a session (a job of this kind runs the engine's loop);
    # one that runs none is carried out by its ``execute``.
    runs: ClassVar[bool] = True
    # Whether it acts on a stored session (the API route /api/sessions/{id}/<name>, the
    # job payload's "session"), or makes a session from nothing (generate).
    on_session: ClassVar[bool] = True
    # Whether it works on the stored session it names (resume, decode) rather than on one it
    # makes: its job knows that session from the moment it is queued.
    in_place: ClassVar[bool] = False

    @abstractmethod
    def check(self, engine: Any, request: Any, session: str | None = None) -> Any:
        """Everything the engine would refuse, before any write or compute: the plan."""

    @abstractmethod
    def create(self, engine: Any, plan: Any) -> Any:
        """The session the run works on (written, when it is new)."""

    def execute(self, engine: Any, plan: Any, session: Any, say: Callable[[str], None]) -> Executed:
        """Carry out an operation that runs no loop (``runs = False``) on the session
        ``create`` gave for ``plan``, here, where the model is: a job of its kind and its
        ``sessions`` subcommand both come here. ``say`` hears its log lines."""
        raise ArcFabricError(f"operation {self.name!r} runs its session: the engine's loop carries it out")

    def request(self, payload: dict[str, Any]) -> BaseModel:
        """A payload (less its ``session``) as this operation's request, validated by its
        schema (what the API does with a request body)."""
        return self.Request.model_validate({k: v for k, v in payload.items() if k != "session"})

    def job_request(self, payload: dict[str, Any]) -> BaseModel:
        """A job's payload as this operation's request, validated by its schema; the
        first error names its field."""
        from pydantic import ValidationError

        try:
            return self.request(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InputError(".".join(str(p) for p in first["loc"]) or "payload", first["msg"]) from None


class EngineChecked(OperationSpec):
    """A built-in operation: a job's values go to ``check`` as given, which judges them
    with the engine's own messages (a job from ``jobs submit``, or from a queue written by
    an older version, never met the API's schema)."""

    def job_request(self, payload: dict[str, Any]) -> BaseModel:
        return self.Request.model_construct(**{k: v for k, v in payload.items() if k != "session"})

    def start(self, run: Any) -> None:
        """The first state of a session this operation made (it has no checkpoint yet)."""
        raise ArcFabricError(f"operation {self.name!r} makes no session that starts without a checkpoint")

    def applies_to(self, capabilities: Capabilities) -> bool:
        """Whether a model with these capabilities takes this operation (by default: its
        ``needs``, or its name, is among the capabilities' operations). A plugin's
        operation says which models it is for (the world model's "act": those taking
        actions)."""
        return (self.needs or self.name) in capabilities.operations
