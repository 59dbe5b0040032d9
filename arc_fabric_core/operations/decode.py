"""decode: a session's video (its final latents, or the clean estimate at a checkpoint),
made by the model of the stage that made those latents, where that model is. It runs no
loop: a job of its kind, and ``sessions decode``, carry it out with :meth:`Decode.execute`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from arc_fabric_core.contract.command_line import Argument, parse_ints
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.operations import EngineChecked, Executed, Request
from arc_fabric_core.store.session import SessionDoc


class DecodeRequest(Request):
    step: int | None = Field(None, ge=0, description="A checkpointed step to preview (default: the final latents)")


@dataclass(frozen=True)
class DecodePlan:
    """What a decode was checked to be: nothing loaded yet."""

    doc: SessionDoc
    step: int | None  # the checkpoint decoded; None: the final latents, else the newest checkpoint
    frames: tuple[int, int] | None = None  # the pixel frames [A, B) written; None: all
    path: Path | None = None  # where; None: the session's folder (``decoded_video_name``)

    @property
    def id(self) -> str:
        return self.doc.id


@dataclass(frozen=True)
class Decoded(Executed):
    """The video a decode wrote: where, and how many frames."""

    path: Path
    frames: int


def decoded_video_name(step: int, total: int) -> str:
    """The file in a session's folder that a decode at ``step`` writes: ``video.mp4`` for
    the final latents, ``video-step<K>.mp4`` for a checkpoint (the server serves both)."""
    return "video.mp4" if step == total else f"video-step{step}.mp4"


class Decode(EngineChecked):
    name = "decode"
    summary = "write the video of a session (or a preview at one of its checkpoints)"
    runs = False
    Request = DecodeRequest
    in_place = True
    cli_help = "decode to mp4 (all frames or a range)"
    cli_flags = {"step": Argument(help="the checkpoint at this step (e.g. a pass's end)")}

    def check(self, engine: Any, request: Any, session: str | None = None) -> DecodePlan:
        assert session is not None
        return self.plan(engine, session, request.step)

    def create(self, engine: Any, plan: DecodePlan) -> Any:
        return engine.open(plan.id)

    def plan(
        self,
        engine: Any,
        session_id: str,
        step: int | None = None,
        frames: tuple[int, int] | None = None,
        path: Path | None = None,
    ) -> DecodePlan:
        """The session, ``step`` one of its checkpoints when given, and ``frames`` within its video."""
        doc = engine.store.load_doc(session_id)  # the store is enough: no plugin is needed to check
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, int):
                raise InputError("step", f"must be a whole number, got {step!r}")
            if step not in {c.step for c in doc.checkpoints}:
                steps = ", ".join(str(c.step) for c in doc.checkpoints) or "none"
                raise InputError("step", f"no checkpoint at step {step}; checkpointed steps: {steps}")
        if frames is not None:
            (a, b), count = frames, doc.params["num_frames"]
            if not 0 <= a < b <= count:  # checked before anything loads
                raise InputError("frames", f"{a}:{b} must satisfy 0 <= A < B <= {count} (pixel frames, B exclusive)")
        return DecodePlan(doc, step, frames, path)

    def execute(self, engine: Any, plan: DecodePlan, session: Any, say: Callable[[str], None]) -> Decoded:
        """Decode the session's final latents (or a checkpoint's clean estimate) to its
        video file, here, where the model is: the server never decodes in its own process."""
        from arc_fabric_core.media.video import write_mp4

        total = session.doc.total_steps
        latents, step = engine.preview_latents(session.id, plan.step)
        say(f"session {session.id}: decode of step {step} of {total} with {session.ref.label}")
        # The whole video is decoded: a video VAE's frames depend on the frames before them.
        video = engine.decode(session, latents, step=step)
        if plan.frames is not None:
            video = video[plan.frames[0] : plan.frames[1]]
        path = plan.path or engine.store.session_dir(session.id) / decoded_video_name(step, total)
        write_mp4(video, path, fps=session.params.fps)
        say(f"wrote {path.name} ({path.stat().st_size / 1024:.0f} KiB)")
        return Decoded(step, path, int(video.shape[0]))

    def cli_arguments(self, parser: Any) -> None:
        self.id_argument(parser)
        parser.add_argument("--frames", default=None, help="pixel frames A:B (B exclusive)")
        self.field_arguments(parser)
        parser.add_argument("--out", type=Path, default=None)

    def cli_plan(self, engine: Any, args: Any, session: str | None) -> DecodePlan:
        """Its request, the frames of ``--frames`` and the file of ``--out`` (default: the
        session's ``video.mp4``, a preview's too)."""
        assert session is not None
        request = self.job_request(self.cli_request(args))
        frames = parse_ints(args.frames, "frames", ":", 2) if args.frames is not None else None
        path = args.out or engine.store.session_dir(session) / "video.mp4"
        return self.plan(engine, session, request.step, (frames[0], frames[1]) if frames else None, path)

    def cli_done(self, session: Any, source_id: str | None, done: Any = None) -> str:
        assert isinstance(done, Decoded)
        total, step = session.doc.total_steps, done.step
        ends = [sum(session.doc.passes[: i + 1]) for i in range(len(session.doc.passes) - 1)]
        if step == total:
            what = "final"
        elif step in ends:
            what = f"pass {ends.index(step)} as it finished, at step {step}/{total}"
        else:
            what = f"preview: clean estimate at step {step}/{total}"
        return f"video:    {done.path} ({done.frames} frames, {what})"
