"""edit: re-noise a session's video to a step and re-denoise only from there (SDEdit).

Give ``step`` (0..N-1: the edit runs N - step steps) or ``strength`` (diffusers'
meaning: the share of the schedule re-run, so step = N - round(strength * N)). Inside
the mask the video is re-denoised (with a new prompt if overridden); outside it the
source is blended back at every step, so it is kept exactly. A finished source edits
its final latents; an unfinished one its clean estimate at its last checkpoint (one
model call)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import Field

from arc_fabric_core.contract.command_line import Argument, parse_ints
from arc_fabric_core.contract.errors import InputError, SessionError
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.operations import EngineChecked, Request
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.engine.edit_mask import EditMask, latent_mask
from arc_fabric_core.engine.planning import session_of
from arc_fabric_core.engine.run import Run
from arc_fabric_core.engine.state import Session
from arc_fabric_core.operations.branching import child_doc, with_overrides
from arc_fabric_core.store.session import EditInfo, Operation, SessionDoc

EDIT_FILE = "edit.safetensors"


@dataclass(frozen=True)
class EditPlan:
    """What an edit was checked to be: nothing computed yet."""

    parent: SessionDoc
    ref: ModelRef
    params: GenerationParams
    overrides: dict[str, Any]  # as validated
    step: int  # where the re-denoising starts
    mask: EditMask
    region: torch.Tensor | None  # the latent mask; None: everywhere


class MaskRequest(Request):
    rect: list[int] | None = Field(None, min_length=4, max_length=4, description="x0, y0, x1, y1 in pixels")
    frames: list[int] | None = Field(None, min_length=2, max_length=2, description="first, end (exclusive) frame")


class EditRequest(Request):
    step: int | None = Field(None, ge=0, description="Re-denoise from this step (or give strength)")
    strength: float | None = Field(None, gt=0, le=1, description="How much to re-denoise, in (0, 1]")
    overrides: dict[str, Any] = Field(default_factory=dict)
    mask: MaskRequest | None = None


class Edit(EngineChecked):
    name = "edit"
    summary = "re-denoise the video from a step (or a strength), inside a mask if given"
    makes = Operation.EDIT
    Request = EditRequest
    cli_help = "re-noise to a step and re-denoise from there, optionally in a mask"
    cli_flags = {"overrides": Argument(pairs=True, help="e.g. prompt='a lantern' seed=3")}
    job_params = "overrides"
    # The mask's parts as the command line spells them: (key, the mask's field, the
    # separator of its integers and their count; None: a path).
    MASK_KEYS: ClassVar[tuple[tuple[str, str, str | None, int], ...]] = (
        ("rect", "rect", ",", 4),
        ("frames", "frames", ":", 2),
        ("mask_image", "image", None, 0),
    )

    def check(self, engine: Any, request: Any, session: str | None = None) -> EditPlan:
        from arc_fabric_core.contract.models import validate_params

        assert session is not None
        given = request.mask.model_dump(exclude_none=True) if isinstance(request.mask, MaskRequest) else request.mask
        try:
            mask = validate_params(EditMask, given) if given else None
        except InputError as exc:
            raise InputError(f"mask.{exc.field}", exc.message) from None
        return self.plan(engine, session, request.step, request.strength, request.overrides, mask)

    def create(self, engine: Any, plan: EditPlan) -> Session:
        return self.branch(engine, plan)

    def cli_arguments(self, parser: Any) -> None:
        """A step or a strength, the mask's parts, then the overrides (and any other field)."""
        self.id_argument(parser)
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--step", type=int, help="re-denoise from this step (runs N - step steps)")
        what.add_argument("--strength", type=float, help="share of the schedule re-run, as in diffusers (0, 1]")
        parser.add_argument("--rect", default=None, help="x0,y0,x1,y1 in pixels (end exclusive)")
        parser.add_argument("--mask-image", default=None, help="mask the video's size; white = edit")
        parser.add_argument("--frames", default=None, help="pixel frames A:B to edit (B exclusive)")
        self.field_arguments(parser, skip={"step", "strength", "mask"})

    def cli_request(self, args: Any) -> dict[str, Any]:
        request = super().cli_request(args)
        given = {"rect": args.rect or None, "frames": args.frames or None, "mask_image": args.mask_image}
        mask = self.mask_of({k: v for k, v in given.items() if v is not None})
        if mask:
            request["mask"] = mask
        return request

    def job_payload(self, values: dict[str, Any]) -> dict[str, Any]:
        """Its fields, with the mask given as ``rect=``, ``frames=`` and ``mask_image=``."""
        given = {k: values.pop(k) for k, *_ in self.MASK_KEYS if k in values}
        payload = super().job_payload(values)
        mask = self.mask_of(given)
        if mask:  # before the overrides, as the request has it
            overrides = payload.pop("overrides", None)
            payload["mask"] = mask
            if overrides is not None:
                payload["overrides"] = overrides
        return payload

    def mask_of(self, given: dict[str, Any]) -> dict[str, Any]:
        """The request's mask from the parts given as the command line spells them
        (``rect`` 0,0,16,16, ``frames`` 5:9, ``mask_image`` a path: one of digits stays text)."""
        mask: dict[str, Any] = {}
        for key, field, sep, count in self.MASK_KEYS:
            if key not in given:
                continue
            value = given[key]
            if sep is None:
                mask[field] = str(value) if value is not None else None
            else:
                mask[field] = list(parse_ints(str(value), f"mask.{field}", sep, count))
        return mask

    def cli_done(self, session: Session, source_id: str | None, done: Any = None) -> str:
        info = session.doc.edit
        assert info is not None
        return (
            f"edit: {session.id} from {source_id} ({info.source} latents), re-denoising steps "
            f"{info.start_step}..{session.doc.total_steps} over {info.coverage:.0%} of the video"
        )

    def plan(
        self,
        engine: Any,
        source_id: str,
        step: int | None = None,
        strength: float | None = None,
        overrides: dict[str, Any] | None = None,
        mask: EditMask | None = None,
    ) -> EditPlan:
        """Everything an edit checks, before any compute or write: the model (not an
        autoregressive one), the overrides, the start step (from ``step`` or ``strength``,
        inside the last pass), a source to edit and the mask."""
        parent = engine.store.load_doc(source_id)
        if engine.autoregressive(parent.model.name):
            # Re-noising the whole video to one level has no meaning when every block has
            # its own schedule; remaking from a block on is the autoregressive edit.
            raise SessionError(
                f"{parent.model.name} makes its video a block at a time: rewind it to a block instead of editing"
            )
        ref, params, overrides = with_overrides(engine, parent, overrides)
        total = parent.total_steps
        if (step is None) == (strength is None):
            raise InputError("step", "give a step or a strength (not both)")
        if strength is not None:
            if not 0 < strength <= 1:
                raise InputError("strength", f"must be in (0, 1], got {strength}")
            step = total - round(strength * total)
            if step >= total:
                raise InputError("strength", f"{strength} re-runs no step of {total}; use at least {1 / total:.3g}")
        assert step is not None
        if not 0 <= step < total:
            raise InputError("step", f"an edit of session {parent.id} starts at a step in 0..{total - 1}, got {step}")
        last_pass = sum(parent.passes[:-1])
        if step < last_pass:
            raise InputError(
                "step",
                f"session {parent.id} denoises in passes of {parent.passes} steps; an edit re-runs part of its last "
                f"pass (the one at the video's size): start at a step in {last_pass}..{total - 1}",
            )
        mask = mask or EditMask()
        if parent.final is None and not parent.checkpoints:
            raise InputError("session", f"session {parent.id} has not run a step yet: there is nothing to edit")
        # The grid of the latents edited, from the file's header (no compute): a multi-pass
        # model's last pass may run at another size than the video's.
        source_record = parent.final or parent.checkpoints[-1]
        grid = engine.store.tensor_shape(parent.id, source_record, "latents")[-3:]
        region = latent_mask(mask, params, ref.latent_space, grid=(grid[0], grid[1], grid[2]))
        return EditPlan(parent, ref, params, overrides, step, mask, region)

    def branch(self, engine: Any, plan: EditPlan) -> Session:
        """The edit's session, written with its source (x0), noise and mask."""
        parent, params, overrides = plan.parent, plan.params, plan.overrides
        step, mask, region, total = plan.step, plan.mask, plan.region, plan.parent.total_steps
        # Every check has passed: now the source latents (one model call for an unfinished source).
        if parent.final is not None:
            source, source_step = "final", total
            x0 = engine.final_latents(parent.id)
        else:
            source, source_step = "estimate", parent.checkpoints[-1].step
            x0 = engine.clean_estimate(parent.id)
        x0 = x0.detach().to("cpu", torch.float32)
        generator = torch.Generator("cpu").manual_seed(params.seed)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
        tensors = {"x0": x0, "noise": noise, "rng.generator": generator.get_state()}
        if region is not None:
            tensors["mask"] = region
        doc = child_doc(engine, parent, params, Operation.EDIT, step, overrides)
        engine.store.share_inputs(parent, doc)
        doc.edit = EditInfo(
            start_step=step,
            source=source,
            source_step=source_step,
            rect=mask.rect,
            frames=mask.frames,
            mask_image=mask.image,
            coverage=float(region.float().mean()) if region is not None else 1.0,
            tensors=engine.store.write_tensors(doc.id, EDIT_FILE, tensors),
        )
        engine.store.save_doc(doc)
        return session_of(engine.plugins, doc, step_index=step)

    def start(self, run: Run) -> None:
        """The edit's first state: the source re-noised to the level of its start step,
        by the model of the stage the edit starts in (earlier stages' models not needed)."""
        session = run.session
        info = session.doc.edit
        assert info is not None and info.tensors is not None
        bound = run.models.stage(session.stage_of(info.start_step))
        run.plan_schedule(bound, first_pass=session.pass_of(info.start_step))
        assert session.schedule is not None
        index = info.start_step - session.pass_start(session.pass_index)
        session.schedule.start_at(index)
        tensors = run.load_edit()
        session.generator = torch.Generator("cpu")
        session.generator.set_state(tensors["rng.generator"])
        x0, noise = tensors["x0"].to(run.device), tensors["noise"].to(run.device)
        session.latents = session.schedule.add_noise(x0, noise, index).to(torch.float32)
        session.step_index = info.start_step
        run.checkpoint()
