"""What a model can do: the session operations it takes, how it denoises, the inputs it
takes beside text.

One object answers for every reader (``python -m arc_fabric_core plugins``, ``GET
/api/models``, the web UI's session page, the server's job checks), so none of them infers
it on its own. A model may declare it (``ModelSpec.capabilities``); what a declaration
leaves out is derived from the hooks its plugin implements, as it always was, so a plugin
that declares nothing keeps working. A declaration must agree with the hooks where the
engine reads them: a model cannot claim an operation whose hook is missing, nor deny how
the engine will run it (in passes, a block at a time); it may offer less than its hooks
allow (edit without masks, no rewind), and the server then refuses what it leaves out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from arc_fabric_core.contract.errors import ArcFabricError, InputError, SessionError

# The operations every model takes: the engine implements them for all.
BASE_OPERATIONS = ("generate", "resume", "fork", "decode")
# Names of input kinds beside text; the ones known today. A plugin may name others.
KNOWN_INPUTS = ("image", "video", "actions", "audio")
# The hooks the derived capabilities read.
EXTEND_HOOK = "arc_extend_params"
REWIND_HOOK = "arc_rewind_params"
PASSES_HOOK = "arc_passes"

InputKind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class CapabilitiesError(ArcFabricError):
    """A model's declared capabilities disagree with its plugin's hooks or its spec."""

    def __init__(self, model: str, plugin: str, field: str, message: str, hook: str | None = None) -> None:
        self.model = model
        self.plugin = plugin
        self.field = field
        self.hook = hook
        super().__init__(f"model {model!r} (plugin {plugin!r}) declares {field} {message}")


class Capabilities(BaseModel):
    """What a model supports. Fields a declaration leaves out are derived from its
    plugin's hooks (see :func:`resolve_capabilities`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    edit: bool = Field(False, description="re-denoise a finished video from a step of its last pass (SDEdit)")
    masks: bool = Field(False, description="an edit confined to a region: a rectangle, frames, an image mask")
    extend: bool = Field(False, description="add blocks to the end of a finished video (needs arc_extend_params)")
    rewind: bool = Field(False, description="remake the blocks from one on (needs arc_rewind_params)")
    autoregressive: bool = Field(
        False, description="makes its video a block at a time (it implements arc_extend_params)"
    )
    passes: bool = Field(False, description="denoises in several passes one after the other (it implements arc_passes)")
    needs_weights: bool = Field(True, description="needs a checkpoint (ModelSpec.needs_weights)")
    inputs: tuple[InputKind, ...] = Field(
        (), description=f"inputs it takes beside text, by kind (e.g. {', '.join(KNOWN_INPUTS)}); none for most"
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def operations(self) -> list[str]:
        """The session operations it takes, in the order the UI shows them."""
        optional = [name for name in ("edit", "extend", "rewind") if getattr(self, name)]
        return [*BASE_OPERATIONS, *optional]

    def describe(self) -> dict[str, Any]:
        """JSON-ready, as the plugin listing and the API show it."""
        return self.model_dump(mode="json")

    def check_job(self, model: str, kind: str, payload: Mapping[str, Any], offered: list[str] | None = None) -> None:
        """Refuse a job of an operation this model does not offer (a declaration may offer
        less than the hooks allow: the engine alone would run it). ``offered``: every
        registered operation it takes (default: the built-in ones these capabilities list)."""
        if kind in ("generate", "resume", "fork"):
            return
        operations = offered if offered is not None else self.operations
        if kind not in operations:
            raise SessionError(f"{model} does not offer {kind} (its operations: {', '.join(operations)})")
        if kind == "edit" and payload.get("mask") and not self.masks:
            raise InputError("mask", f"{model} edits the whole video only: it takes no mask; drop mask")


def resolve_capabilities(
    declared: Capabilities | None,
    *,
    model: str,
    plugin: str,
    implements: Callable[[str], bool],
    needs_weights: bool,
    input_kinds: tuple[str, ...] = (),
) -> Capabilities:
    """The capabilities of ``model``: ``declared``'s fields where given, the rest derived
    from the hooks ``plugin`` implements (``implements(hook)``). A declaration the hooks
    or the spec contradict raises :class:`CapabilitiesError` naming the hook."""
    autoregressive = implements(EXTEND_HOOK)
    derived: dict[str, Any] = {
        "autoregressive": autoregressive,
        "extend": autoregressive,
        "rewind": implements(REWIND_HOOK),
        "passes": implements(PASSES_HOOK),
        "needs_weights": needs_weights,
        "inputs": input_kinds,
    }
    given = declared.model_dump(include=declared.model_fields_set) if declared is not None else {}
    values = {**derived, **given}
    # An edit re-noises the whole video to one level: an autoregressive model's blocks have
    # schedules of their own, so it edits by rewinding instead (the engine refuses an edit).
    values.setdefault("edit", not values["autoregressive"])
    values.setdefault("masks", values["edit"])

    def refuse(field: str, message: str, hook: str | None = None) -> CapabilitiesError:
        return CapabilitiesError(model, plugin, field, message, hook)

    if values["autoregressive"] != autoregressive:
        if autoregressive:
            raise refuse(
                "autoregressive=False",
                f"but its plugin implements {EXTEND_HOOK}, so the engine runs it a block at a time",
                EXTEND_HOOK,
            )
        raise refuse(
            "autoregressive=True",
            f"but its plugin does not implement {EXTEND_HOOK}, the hook that makes a model autoregressive",
            EXTEND_HOOK,
        )
    if values["extend"] and not autoregressive:
        raise refuse("extend=True", f"but its plugin does not implement {EXTEND_HOOK}", EXTEND_HOOK)
    if values["rewind"] and not derived["rewind"]:
        raise refuse("rewind=True", f"but its plugin does not implement {REWIND_HOOK}", REWIND_HOOK)
    if values["passes"] != derived["passes"]:
        missing = "does not implement" if values["passes"] else "implements"
        raise refuse(f"passes={values['passes']}", f"but its plugin {missing} {PASSES_HOOK}", PASSES_HOOK)
    if values["edit"] and autoregressive:
        raise refuse(
            "edit=True",
            f"but its plugin implements {EXTEND_HOOK} (autoregressive): the engine refuses an edit of such a "
            "model; declare rewind, its form of an edit",
            EXTEND_HOOK,
        )
    if values["masks"] and not values["edit"]:
        raise refuse("masks=True", "without edit: a mask is the region an edit re-denoises")
    if values["needs_weights"] != needs_weights:
        raise refuse(
            f"needs_weights={values['needs_weights']}", f"but its ModelSpec says needs_weights={needs_weights}"
        )
    if len(set(values["inputs"])) != len(values["inputs"]):
        raise refuse("inputs", f"names an input kind twice: {list(values['inputs'])}")
    if input_kinds and set(values["inputs"]) != set(input_kinds):
        raise refuse(
            f"inputs={list(values['inputs'])}",
            f"but its ModelSpec.inputs are of the kinds {list(input_kinds)} (leave inputs out: they are derived)",
        )
    return Capabilities(**values)
