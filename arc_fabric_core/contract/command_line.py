"""How an operation is spelt on the command line: its ``sessions`` subcommand and its
``jobs submit`` keys, both derived from its request's fields.

An operation gets this from :class:`CommandLine` (a base of
:class:`arc_fabric_core.contract.operations.OperationSpec`): by default a flag per
request field, typed from its annotation, and the fields given become its request. An
operation respells what its users type otherwise (``cli_flags``: a help text, a flag
made required, a mapping given as ``key=value`` pairs), or adds arguments that are no
field of its request (``fork --stage``), in its own class; a field it does not name
still gets its flag, so a new field is on the command line with no edit here or in the
CLI. ``key=value`` values are typed as Hydra types them on the generate command line.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from arc_fabric_core.contract.errors import InputError


@dataclass(frozen=True)
class Argument:
    """How ``sessions NAME`` spells one request field, where its schema's flag is not
    what its users type. A field spelt here takes this help text (None: none, not its
    description); ``required`` overrides its schema's; ``pairs`` gives a mapping as
    ``key=value`` pairs after the session id (``prompt='a cat' seed=3``: the trailing
    pairs the command line folds into ``overrides``)."""

    help: str | None = None
    required: bool | None = None
    pairs: bool = False


class CommandLine:
    """An operation's command-line adapter: the arguments of its ``sessions``
    subcommand, the request they make, the line said once it is made, and its
    ``jobs submit`` payload. Subclasses set ``name``, ``Request`` and the rest
    (:class:`arc_fabric_core.contract.operations.OperationSpec`)."""

    # The operation's own (OperationSpec sets them, with ``check`` and ``job_request``).
    name: ClassVar[str]
    Request: ClassVar[type[Any]]
    on_session: ClassVar[bool]

    # Whether ``sessions`` has a subcommand for it (an operation on a stored session;
    # one spelt through another's flags has none: hand-off is ``fork --hand-off``).
    cli_subcommand: ClassVar[bool] = True
    # The subcommand's line in ``sessions --help`` (default: the summary).
    cli_help: ClassVar[str | None] = None
    # Request fields (and ``id``, the session's) spelt otherwise than their schema says.
    cli_flags: ClassVar[Mapping[str, Argument]] = {}
    # ``jobs submit``: the request field that its keys naming no field go into (generate's
    # params, a fork's overrides); None: such a key is refused.
    job_params: ClassVar[str | None] = None

    def cli_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The arguments of ``sessions NAME``: the session's ``id``, then a flag per
        request field. The command line adds what every run takes (``--no-run``,
        ``--out``, ...)."""
        if self.on_session:
            self.id_argument(parser)
        self.field_arguments(parser)

    def id_argument(self, parser: argparse.ArgumentParser) -> None:
        """The positional ``id`` of the session it acts on (resolved from a prefix or suffix)."""
        spelt = self.cli_flags.get("id")
        parser.add_argument("id", help=spelt.help if spelt is not None else None)

    def field_arguments(self, parser: Any, skip: Collection[str] = ()) -> None:
        """An argument per request field but those in ``skip`` (spelt by the operation
        itself): as ``cli_flags`` spells it, else from its schema."""
        for field, info in self.Request.model_fields.items():
            if field not in skip:
                schema_argument(parser, field, info, self.cli_flags.get(field))

    def cli_request(self, args: argparse.Namespace) -> dict[str, Any]:
        """The payload the parsed ``args`` make (a job's, less its session): every
        request field given (``key=value`` pairs as a mapping)."""
        out: dict[str, Any] = {}
        for field in self.Request.model_fields:
            value = getattr(args, field, None)
            spelt = self.cli_flags.get(field)
            if spelt is not None and spelt.pairs:
                value = parse_overrides(value or [])
            if value is not None and value is not False:
                out[field] = value
        return out

    def cli_plan(self, engine: Any, args: argparse.Namespace, session: str | None) -> Any:
        """The plan of ``sessions NAME`` with ``args``: the operation's own check of the
        request they make."""
        return self.check(engine, self.job_request(self.cli_request(args)), session)  # type: ignore[attr-defined]

    def cli_created(self) -> str | None:
        """What ``sessions NAME --no-run`` creates without running it (``create the fork
        only``); None: it creates no session to run later (a resume runs its own)."""
        return self.name

    def cli_done(self, session: Any, source_id: str | None, done: Any = None) -> str | None:
        """The line said once the operation is carried out: after ``create`` for one that
        runs (before its run), with what ``execute`` did for one that does not. None: no line."""
        if done is not None:
            return f"{self.name}: session {session.id} at step {done.step}"
        return f"{self.name}: {session.id} from {source_id}, runs steps {session.step_index}..{session.doc.total_steps}"

    def job_payload(self, values: dict[str, Any]) -> dict[str, Any]:
        """``jobs submit NAME key=value ...`` as this operation's job payload: a key that
        is a field of the request is a key of the payload, typed from its annotation
        (``session`` for an operation on a stored session, as text); any other key goes
        into the ``job_params`` field, or is refused."""
        fields = self.Request.model_fields
        payload: dict[str, Any] = {}
        params: dict[str, Any] = {}
        for key, value in values.items():
            if key == "session" and self.on_session:
                payload[key] = str(value) if value is not None else None  # an id of digits stays text
            elif key in fields and key != self.job_params:
                payload[key] = typed_value(key, fields[key], value)
            elif self.job_params is not None:
                params[key] = value
            else:
                allowed = sorted({*fields, *(("session",) if self.on_session else ())})
                raise InputError(key, f"unknown for a {self.name} job; allowed: {', '.join(allowed)}")
        if params:
            payload[str(self.job_params)] = params
        return payload


def field_type(info: Any) -> Any:
    """The one type a request field holds besides None (``int`` for ``int | None``);
    None when it may hold several (``str | dict``)."""
    annotation = info.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kinds[0] if len(kinds) == 1 else None
    return annotation


def _nullable(info: Any) -> bool:
    annotation = info.annotation
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        annotation
    )


def schema_argument(parser: Any, field: str, info: Any, spelt: Argument | None = None) -> None:
    """The argument of a request field: ``--field`` typed from its annotation (int,
    float, text, a flag for a bool; JSON for anything else), or as ``spelt`` says."""
    kind = field_type(info)
    help_text = spelt.help if spelt is not None else info.description or None
    if spelt is not None and spelt.pairs:
        parser.add_argument(field, nargs="*", metavar="key=value", help=help_text)
        return
    flag = "--" + field.replace("_", "-")
    required = spelt.required if spelt is not None and spelt.required is not None else info.is_required()
    if kind is bool:
        parser.add_argument(flag, dest=field, action="store_true", help=help_text)
    elif kind in (int, float, str):
        parser.add_argument(flag, dest=field, type=kind, required=required, default=None, help=help_text)
    else:
        parser.add_argument(
            flag, dest=field, type=json.loads, required=required, default=None, metavar="JSON", help=help_text
        )


def typed_value(field: str, info: Any, value: Any) -> Any:
    """A ``key=value`` value of a request field, typed from its annotation: a whole
    number for an int (``3.0`` is 3), a number for a float, text for a str (an id or a
    path of digits stays text); None where the field may be None; anything else as Hydra
    read it."""
    kind = field_type(info)
    if value is None and (kind is str or _nullable(info)):
        return None
    if kind is int:
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise InputError(field, f"must be a whole number, got {value!r}") from None
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InputError(field, f"must be a number{_interval(info)}, got {value!r}") from None
    if kind is str:
        return str(value)
    container = typing.get_origin(kind) or kind
    if container in (dict, list) and isinstance(value, str):
        # JSON, as the subcommand's flag for such a field takes it (Hydra's grammar has no
        # quoted keys, so '{"actions": "a.npy"}' reaches here as text).
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InputError(field, f"must be JSON ({exc.msg} at character {exc.pos}), got {value!r:.80}") from None
        if not isinstance(value, container):
            raise InputError(field, f"must be a JSON {'object' if container is dict else 'array'}, got {value!r:.80}")
    return value


def _interval(info: Any) -> str:
    """`` in (0, 1]`` for a field bounded on both sides (its schema's gt/ge and lt/le)."""
    bounds: dict[str, Any] = {}
    for item in info.metadata:
        for name in ("gt", "ge", "lt", "le"):
            if getattr(item, name, None) is not None:
                bounds[name] = getattr(item, name)
    low = f"({bounds['gt']}" if "gt" in bounds else f"[{bounds['ge']}" if "ge" in bounds else None
    high = f"{bounds['lt']})" if "lt" in bounds else f"{bounds['le']}]" if "le" in bounds else None
    return f" in {low}, {high}" if low and high else ""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """key=value pairs, spelt as on the generate command line: values are typed as Hydra
    types them (``steps=8`` an int, ``'timesteps=[1000,909]'`` a list, ``seed=null``
    None), and a plugin's parameter may be given as ``key=`` or ``model.params.key=``.
    A value Hydra would take as a sweep or cannot parse stays the text given."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError("overrides", f"expected key=value, got {item!r}")
        key = key.removeprefix("model.params.")
        out[key] = parse_value(text, parser)
    return out


def parse_value(text: str, parser: Any) -> Any:
    """One override value as Hydra's ``OverridesParser`` reads it (``3`` -> 3, ``a fox`` -> 'a fox')."""
    try:
        override = parser.parse_override(f"key={text}")
    except Exception:  # Hydra's grammar refused it: the plain text is what was meant
        return text
    if override.is_sweep_override():
        return text
    return override.value()


def parse_ints(text: str, field: str, sep: str, count: int) -> tuple[int, ...]:
    """``count`` integers spelt with ``sep`` between them (``0,0,16,16``, ``5:9``)."""
    try:
        values = tuple(int(v) for v in text.split(sep))
    except ValueError:
        values = ()
    if len(values) != count:
        shape = sep.join(["N"] * count)
        raise InputError(field, f"expected {shape} (integers), got {text!r}")
    return values
