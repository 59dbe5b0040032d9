"""`python -m arc_fabric_core sessions ...`: the session store from the command line.

    sessions list                         the lineage tree of every session
    sessions show ID                      params, progress, files, lineage
    sessions resume ID [--until K]        continue from the last good checkpoint
    sessions fork ID --step K [k=v ...]   branch at a checkpoint, with overrides
                     [--stage N=MODEL/VARIANT] [--hand-off MODEL/VARIANT]
    sessions edit ID --step K | --strength S [--rect x0,y0,x1,y1] [--mask-image PNG]
                     [--frames A:B] [k=v ...]
    sessions extend ID --blocks N [--prompt P]
                                          an autoregressive video made N blocks longer
    sessions rewind ID --block B [--prompt P] [k=v ...]
                                          remake an autoregressive video from block B on
    sessions decode ID [--frames A:B] [--step K]
                                          to mp4 (an unfinished session: its preview)
    sessions delete ID                    children keep the checkpoints they share
    sessions repair ID                    rebuild a damaged session.json from its checkpoints
    sessions gc [--dry-run]               remove files no session names

An ID may be abbreviated to any unique prefix or suffix of at least 4 characters. The store is --store,
else $ARC_FABRIC_STORE, else outputs/sessions (where generation writes too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.store.session import step_ranges


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m arc_fabric_core sessions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--store", type=Path, default=None, help="session store (default: $ARC_FABRIC_STORE or outputs/sessions)"
    )
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--dtype", default="auto")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="every session as a lineage tree")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("repair", help="rebuild a damaged session.json from its newest intact checkpoint")
    p.add_argument("id")

    p = sub.add_parser("show", help="one session: params, progress, files, lineage")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    def running(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", type=Path, default=None, help="mp4 to write (default: <session dir>/video.mp4)")
        p.add_argument("--no-video", action="store_true", help="do not decode when finished")
        p.add_argument("--checkpoint-every", type=int, default=1, help="checkpoint every k steps (0 = none)")
        p.add_argument("--checkpoint-keep", type=int, default=0, help="newest n checkpoints to keep (0 = all)")

    p = sub.add_parser("resume", help="continue a session from its last good checkpoint")
    p.add_argument("id", help="session id, or a unique prefix or suffix of one")
    p.add_argument("--until", type=int, default=None, help="stop after this step (default: the end)")
    running(p)

    p = sub.add_parser("fork", help="branch a session at a checkpointed step, with overrides")
    p.add_argument("id")
    p.add_argument("--step", type=int, required=True)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. prompt='a cat' guidance=6 seed=3")
    p.add_argument(
        "--stage",
        action="append",
        default=[],
        metavar="N=MODEL/VARIANT",
        help="hybrid: run stage N (from the fork step on) with another model, e.g. --stage 1=wan21/14b",
    )
    p.add_argument(
        "--hand-off",
        default=None,
        metavar="MODEL/VARIANT",
        help="run the steps from the fork step on with another model (same latent space)",
    )
    p.add_argument("--no-run", action="store_true", help="create the fork only; run it later with resume")
    running(p)

    p = sub.add_parser("edit", help="re-noise to a step and re-denoise from there, optionally in a mask")
    p.add_argument("id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--step", type=int, help="re-denoise from this step (runs N - step steps)")
    what.add_argument("--strength", type=float, help="share of the schedule re-run, as in diffusers (0, 1]")
    p.add_argument("--rect", default=None, help="x0,y0,x1,y1 in pixels (end exclusive)")
    p.add_argument("--mask-image", default=None, help="mask the video's size; white = edit")
    p.add_argument("--frames", default=None, help="pixel frames A:B to edit (B exclusive)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. prompt='a lantern' seed=3")
    p.add_argument("--no-run", action="store_true", help="create the edit only; run it later with resume")
    running(p)

    p = sub.add_parser("extend", help="an autoregressive video made longer (a new session)")
    p.add_argument("id")
    p.add_argument("--blocks", type=int, required=True, help="blocks to add")
    p.add_argument("--prompt", default=None, help="the prompt of the new blocks (default: the last one)")
    p.add_argument("--no-run", action="store_true", help="create the extension only; run it later with resume")
    running(p)

    p = sub.add_parser("rewind", help="remake an autoregressive video from a block on (a new session)")
    p.add_argument("id")
    p.add_argument("--block", type=int, required=True, help="the first block made again")
    p.add_argument("--prompt", default=None, help="the prompt from that block on (default: as before)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. seed=3")
    p.add_argument("--no-run", action="store_true", help="create the rewind only; run it later with resume")
    running(p)

    p = sub.add_parser("decode", help="decode to mp4 (all frames or a range)")
    p.add_argument("id")
    p.add_argument("--frames", default=None, help="pixel frames A:B (B exclusive)")
    p.add_argument("--step", type=int, default=None, help="the checkpoint at this step (e.g. a pass's end)")
    p.add_argument("--out", type=Path, default=None)

    for op in _derived_operations(sub.choices):
        p = sub.add_parser(op.name, help=op.summary)
        p.add_argument("id")
        for field, info in op.Request.model_fields.items():
            _schema_argument(p, field, info)
        p.add_argument("--no-run", action="store_true", help=f"create the {op.name} only; run it later with resume")
        running(p)

    p = sub.add_parser("delete", help="delete a session; its children keep what they share")
    p.add_argument("id")

    p = sub.add_parser("gc", help="remove files that no session names")
    p.add_argument("--dry-run", action="store_true")
    return ap


def main(argv: list[str]) -> None:
    from arc_fabric_core.cli.common import run_subcommand

    run_subcommand(_parser(), argv, "overrides", _dispatch, "interrupted; the session is paused at its last checkpoint")


def _derived_operations(taken: Any) -> list[Any]:
    """Registered operations on a stored session that have no subcommand spelt here (a
    plugin's): their subcommand is derived from their request schema."""
    from arc_fabric_core.dispatch.plugins import get_plugins

    ops = get_plugins().operations().values()
    return [op for op in ops if op.on_session and op.runs and op.name not in taken and op.name != "hand-off"]


def _schema_argument(parser: argparse.ArgumentParser, field: str, info: Any) -> None:
    """``--field`` for a request field: typed from its annotation (int, float, text, a flag
    for a bool; JSON for anything else)."""
    import typing

    kinds = [a for a in typing.get_args(info.annotation) if a is not type(None)] or [info.annotation]
    kind = kinds[0] if len(kinds) == 1 else None
    flag = "--" + field.replace("_", "-")
    required = info.is_required()
    help_text = info.description or None
    if kind is bool:
        parser.add_argument(flag, dest=field, action="store_true", help=help_text)
    elif kind in (int, float, str):
        parser.add_argument(flag, dest=field, type=kind, required=required, default=None, help=help_text)
    else:
        parser.add_argument(
            flag, dest=field, type=json.loads, required=required, default=None, metavar="JSON", help=help_text
        )


def _dispatch(args: argparse.Namespace) -> None:
    from arc_fabric_core.store.files import SessionStore, default_store_dir

    store = SessionStore(args.store if args.store is not None else default_store_dir())
    command = args.command
    if command == "list":
        return _list(store, args)
    if command == "gc":
        return _gc(store, args)
    session_id = resolve_id(store, args.id)
    if command == "show":
        return _show(store, session_id, args)
    if command == "delete":
        freed = store.delete(session_id)
        print(f"deleted {session_id} ({_size(freed)} freed)")
        return None
    if command == "repair":
        doc, notes = store.repair(session_id)
        print(f"repair {session_id}: {'; '.join(notes)}; status {doc.status.value} at step {doc.step_index}")
        return None
    check_out(getattr(args, "out", None))  # before any compute: a run's video goes there at its end
    engine = _engine(store, args)
    if command == "decode":
        return _decode(engine, session_id, args.frames, args.out, args.step)
    derived = {op.name: op for op in _derived_operations(())}
    if command in derived and command not in _SPELT:
        op = derived[command]
        given = {f: getattr(args, f) for f in op.Request.model_fields if getattr(args, f, None) not in (None, False)}
        session = op.create(engine, op.check(engine, op.job_request(given), session_id))
        print(f"{command}: {session.id} from {session_id}, runs steps {session.step_index}..{session.doc.total_steps}")
    elif command == "resume":
        session = engine.open(session_id)
        if session.doc.final is not None:
            raise SessionError(f"session {session_id} is already finished; fork or edit it instead")
    elif command == "extend":
        session = engine.extend(session_id, args.blocks, args.prompt)
        added = session.doc.total_steps - session.step_index
        print(f"extend: {session.id} from {session_id}, {args.blocks} more blocks ({added} steps)")
    elif command == "rewind":
        session = engine.rewind(session_id, args.block, args.prompt, parse_overrides(args.overrides))
        print(f"rewind: {session.id} from {session_id} at block {args.block} (step {session.step_index})")
    elif command == "fork":
        hybrid = restage(store.load_doc(session_id), args.step, args.stage, args.hand_off)
        session = engine.fork(session_id, args.step, parse_overrides(args.overrides), hybrid=hybrid)
        print(f"fork: {session.id} from {session_id}@{args.step}, runs {session.doc.total_steps - args.step} steps")
    else:
        session = engine.edit(
            session_id,
            step=args.step,
            strength=args.strength,
            overrides=parse_overrides(args.overrides),
            mask=_mask(args),
        )
        info = session.doc.edit
        assert info is not None
        print(
            f"edit: {session.id} from {session_id} ({info.source} latents), re-denoising steps "
            f"{info.start_step}..{session.doc.total_steps} over {info.coverage:.0%} of the video"
        )
    if getattr(args, "no_run", False):
        print(f"created {session.id}; run it with: sessions resume {session.id}")
        return None
    until = getattr(args, "until", None)
    _run(engine, session, until)
    if session.done and not args.no_video:
        _decode(engine, session.id, None, args.out)


# The operations spelt by hand above (their flags predate the registry); the rest are derived.
_SPELT = frozenset({"resume", "fork", "edit", "extend", "rewind", "decode"})

# Fewer characters would match by accident (one digit is the suffix of a tenth of all ids).
MIN_ID_PART = 4


def resolve_id(store: Any, given: str) -> str:
    """An exact id, or a unique prefix or suffix of one (at least ``MIN_ID_PART`` characters)."""
    if given and "/" not in given and given not in (".", "..") and store.exists(given):
        return given
    if len(given) < MIN_ID_PART:
        raise InputError("id", f"{given!r} is too short: give a session id or at least {MIN_ID_PART} characters of one")
    ids = store.list_ids()
    matches = [i for i in ids if i.startswith(given) or i.endswith(given)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        latest = ", ".join(ids[-3:]) or "none"
        raise InputError("id", f"no session {given!r} in {store.root} (latest: {latest})")
    raise InputError("id", f"{given!r} matches {len(matches)} sessions: {', '.join(matches[:5])}; give more of it")


def _model_variant(text: str, field: str) -> tuple[str, str | None]:
    model, _, variant = text.partition("/")
    if not model:
        raise InputError(field, f"expected MODEL or MODEL/VARIANT, got {text!r}")
    return model, variant or None


def restage(doc: Any, step: int, stages: list[str], hand_off: str | None) -> Any:
    """The hybrid schedule of a fork from ``--stage N=MODEL/VARIANT`` and ``--hand-off``
    (None when neither is given): the parent's stages, at the steps they ran."""
    from arc_fabric_core.engine.hybrid import HybridSpec

    if not stages and hand_off is None:
        return None
    if stages and hand_off is not None:
        raise InputError("stage", "give --stage or --hand-off, not both")
    current = doc.stages or []
    specs = [
        {"model": st.model.name, "variant": st.model.variant, "weights": st.model.weights, "guidance": st.guidance}
        for st in current
    ] or [{"model": doc.model.name, "variant": doc.model.variant, "weights": doc.model.weights}]
    ends = [st.end_step for st in current[:-1]]
    if any(e is None for e in ends):
        raise InputError("stage", f"session {doc.id} has not started: where its stages hand over is not known yet")
    if hand_off is not None:
        model, variant = _model_variant(hand_off, "hand-off")
        keep = [i for i, e in enumerate([*ends, doc.total_steps]) if step > (ends[i - 1] if i else 0)]
        specs = [specs[i] for i in keep] + [{"model": model, "variant": variant}]
        ends = [*[ends[i] for i in keep[:-1]], step]
    for item in stages:
        index, sep, target = item.partition("=")
        if not sep or not index.strip().isdigit():
            raise InputError("stage", f"expected N=MODEL/VARIANT, got {item!r}")
        n = int(index)
        if not 0 <= n < len(specs):
            raise InputError("stage", f"session {doc.id} has stages 0..{len(specs) - 1}, got {n}")
        model, variant = _model_variant(target, "stage")
        specs[n] = {"model": model, "variant": variant, "guidance": specs[n].get("guidance")}
    return HybridSpec(stages=specs, boundaries=ends, unit="step", tiny="false", name=doc.schedule_name)


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
    try:
        values = tuple(int(v) for v in text.split(sep))
    except ValueError:
        values = ()
    if len(values) != count:
        shape = sep.join(["N"] * count)
        raise InputError(field, f"expected {shape} (integers), got {text!r}")
    return values


def _mask(args: argparse.Namespace) -> Any:
    from arc_fabric_core.engine.edit_mask import EditMask

    return EditMask(
        rect=parse_ints(args.rect, "mask.rect", ",", 4) if args.rect else None,
        image=args.mask_image,
        frames=parse_ints(args.frames, "mask.frames", ":", 2) if args.frames else None,
    )


def _engine(store: Any, args: argparse.Namespace) -> Any:
    from arc_fabric_core.jobs.runtime_setup import RuntimeSettings, build_engine

    settings = RuntimeSettings(
        store_dir=store.root,
        device=args.device,
        dtype=args.dtype,
        checkpoint_every=getattr(args, "checkpoint_every", 1),
        checkpoint_keep=getattr(args, "checkpoint_keep", 0),
    )
    return build_engine(settings, store=store)


def _run(engine: Any, session: Any, until: int | None) -> None:
    from arc_fabric_core.cli.common import run_with_progress

    run_with_progress(engine, session, until)
    print(f"session {session.id}: {session.doc.status.value} at step {session.step_index}/{session.doc.total_steps}")


def check_out(out: Path | None) -> None:
    """Refuse an ``--out`` no video can be written at, before anything runs or loads."""
    from arc_fabric_core.media.video import destination_problem

    problem = destination_problem(out) if out is not None else None
    if problem is not None:
        raise InputError("--out", problem)


def _decode(engine: Any, session_id: str, frames: str | None, out: Path | None, step: int | None = None) -> None:
    from arc_fabric_core.contract.errors import OutputError
    from arc_fabric_core.media.video import write_mp4

    check_out(out)
    session = engine.open(session_id)
    count = session.params.num_frames
    a, b = parse_ints(frames, "frames", ":", 2) if frames is not None else (0, count)
    if not 0 <= a < b <= count:  # checked before anything loads
        raise InputError("frames", f"{frames} must satisfy 0 <= A < B <= {count} (pixel frames, B exclusive)")
    latents, step = engine.preview_latents(session_id, step)
    # The whole video is decoded: a video VAE's frames depend on the frames before them.
    video = engine.decode(session, latents, step=step)[a:b]
    path = out or engine.store.session_dir(session_id) / "video.mp4"
    try:
        write_mp4(video, path, fps=session.params.fps)
    except OutputError as exc:  # the session is untouched: decoding again writes the video
        again = f"sessions decode {session_id}" + (f" --out {out}" if out is not None else "")
        raise OutputError(
            exc.path, f"{exc.reason}; the session is kept: `{again}` writes it again", exc.errno
        ) from None
    total = session.doc.total_steps
    ends = [sum(session.doc.passes[: i + 1]) for i in range(len(session.doc.passes) - 1)]
    if step == total:
        what = "final"
    elif step in ends:
        what = f"pass {ends.index(step)} as it finished, at step {step}/{total}"
    else:
        what = f"preview: clean estimate at step {step}/{total}"
    print(f"video:    {path} ({video.shape[0]} frames, {what})")


def _list(store: Any, args: argparse.Namespace) -> None:
    from arc_fabric_core.store.lineage import render_tree

    docs, damaged = store.scan()
    if args.json:
        listed = [{**d.model_dump(mode="json"), "status": store.status_of(d)} for d in docs]
        listed += [{"id": d.session_id, "status": "damaged", "file": d.path, "error": d.reason} for d in damaged]
        print(json.dumps(listed, indent=2))
        return
    if not docs and not damaged:
        print(f"no sessions in {store.root}")
        return
    lines = render_tree(docs, status=store.status_of)
    lines += [f"{d.session_id}  damaged: {d.path}: {d.reason} (sessions repair {d.session_id})" for d in damaged]
    print("\n".join(lines))


def _show(store: Any, session_id: str, args: argparse.Namespace) -> None:
    from arc_fabric_core.store.files import session_bytes
    from arc_fabric_core.store.lineage import ancestors, children_of, edge

    docs = store.load_all()
    by_id = {d.id: d for d in docs}
    doc = by_id.get(session_id) or store.load_doc(session_id)
    kids = [d.id for d in children_of(docs).get(doc.id, [])]
    chain = ancestors(doc, by_id)
    total, own = session_bytes(store, doc)
    if args.json:
        data = doc.model_dump(mode="json")
        data["status"] = store.status_of(doc)
        data["lineage"] = {"ancestors": chain, "children": kids}
        data["bytes"] = {"total": total, "own": own}
        print(json.dumps(data, indent=2))
        return
    weights = f"  weights {doc.model.weights}" if doc.model.weights else ""
    error = f"  error: {doc.error}" if doc.error else ""
    parent = ""
    if doc.parent:
        parent = f" of {doc.parent}" + ("" if doc.parent in by_id else " (deleted)")
    lines = [
        f"session   {doc.id}  ({store.session_dir(doc.id)})",
        f"model     {doc.model.name}/{doc.model.variant}{weights}",
        f"status    {store.status_of(doc)}, step {doc.step_index}/{doc.total_steps}{error}",
        f"created   {doc.created_at}   updated {doc.updated_at}",
        f"origin    {edge(doc)}{parent}",
        f"lineage   {' > '.join([*chain, doc.id])}",
        f"children  {', '.join(kids) or 'none'}",
        f"checkpoints at steps {step_ranges([c.step for c in doc.checkpoints]) or 'none'}",
        *_plan_lines(doc),
        f"disk      {_size(total)} ({_size(own)} not shared with other sessions)",
        "params",
    ]
    lines += [f"  {k} = {v!r}" for k, v in doc.params.items()]
    if doc.edit is not None:
        e = doc.edit
        lines.append(
            f"edit      from step {e.start_step} of the {e.source} latents (step {e.source_step}); "
            f"mask rect={e.rect} frames={e.frames} image={e.mask_image} covers {e.coverage:.0%}"
        )
    print("\n".join(lines))


def _plan_lines(doc: Any) -> list[str]:
    """Passes and hybrid stages, when the session has them."""
    lines = []
    if doc.passes:
        starts = [sum(doc.passes[:i]) for i in range(len(doc.passes))]
        lines.append("passes    " + ", ".join(f"{s}..{s + n}" for s, n in zip(starts, doc.passes, strict=True)))
    begin = 0
    for i, st in enumerate(doc.stages):
        end = st.end_step if st.end_step is not None else "?"
        guidance = f", guidance {st.guidance}" if st.guidance is not None else ""
        name = f" ({doc.schedule_name})" if i == 0 and doc.schedule_name else ""
        lines.append(f"stage {i}   {st.model.name}/{st.model.variant} steps {begin}..{end}{guidance}{name}")
        begin = st.end_step if st.end_step is not None else begin
    return lines


def _gc(store: Any, args: argparse.Namespace) -> None:
    garbage = store.gc(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for g in garbage:
        print(f"{verb} {g.session}/{g.file} ({g.reason}, {_size(g.bytes)})")
    print(f"{verb} {len(garbage)} files, {_size(sum(g.bytes for g in garbage))}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


if __name__ == "__main__":
    main(sys.argv[1:])
