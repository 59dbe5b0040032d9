"""The control of a diffusers transformer's block stack.

A diffusers video transformer runs its blocks in a loop (``for block in self.blocks:
hidden_states = block(hidden_states, ...)``; LTX and Cosmos name the list
``transformer_blocks``). :func:`install` changes the class of that ``nn.ModuleList``
instance, once, to a subclass whose iteration a :class:`StackController` may take over:
with none active it yields the blocks themselves, so the model runs as before; with one
active it yields thin callables that ask the controller, at each transformer call,
whether to run the blocks or to stand in for them. Module names, ``state_dict`` keys and
the blocks are untouched (regional compilation still compiles each block).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch import nn

from arc_fabric_core.contract.errors import InputError

BLOCK_LIST_NAMES = ("blocks", "transformer_blocks")
_CONTROLLER = "_arc_stepcache_controller"


class Decider(Protocol):
    """What a step cache decides at one transformer call (``call``: 0 for the first call
    of the step, 1 for the next: cond, then uncond)."""

    def before(self, call: int, h0: torch.Tensor) -> bool | None:
        """Skip the whole stack (True), run it (False), or decide after block 0 (None)."""

    def after_first(self, call: int, h0: torch.Tensor, first: torch.Tensor) -> bool:
        """Skip the other blocks, given block 0's output ``first``."""

    def skipped(self, call: int, h0: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        """The stack's output in place of the blocks not run (``first``: block 0's output
        when it ran)."""

    def computed(self, call: int, h0: torch.Tensor, first: torch.Tensor, out: torch.Tensor) -> None:
        """Every block ran: ``first`` is block 0's output, ``out`` the last block's."""


class StackController:
    """One denoising step's control of a block stack: numbers the transformer calls and
    counts those whose blocks ran and those skipped."""

    def __init__(self, decider: Decider) -> None:
        self.decider = decider
        self.calls = 0
        self.ran = 0
        self.skipped = 0

    def run(self, blocks: list[nn.Module]) -> Iterator[Callable[..., Any]]:
        call = self.calls
        self.calls += 1
        last = len(blocks) - 1
        run: dict[str, Any] = {"skip": False, "h0": None, "first": None}

        def head(*args: Any, **kwargs: Any) -> torch.Tensor:
            h0 = _hidden_states(args, kwargs)
            run["h0"] = h0
            decision = self.decider.before(call, h0)
            if decision is True:
                run["skip"] = True
                self.skipped += 1
                return h0
            first = _tensor(blocks[0](*args, **kwargs))
            run["first"] = first
            if decision is None and self.decider.after_first(call, h0, first):
                run["skip"] = True
                self.skipped += 1
            else:
                self.ran += 1
            return first

        def middle(block: nn.Module) -> Callable[..., Any]:
            def call_block(*args: Any, **kwargs: Any) -> Any:
                return _hidden_states(args, kwargs) if run["skip"] else block(*args, **kwargs)

            return call_block

        def tail(*args: Any, **kwargs: Any) -> torch.Tensor:
            if run["skip"]:
                return self.decider.skipped(call, run["h0"], run["first"])
            out = _tensor(blocks[last](*args, **kwargs))
            self.decider.computed(call, run["h0"], run["first"], out)
            return out

        yield head
        for block in blocks[1:last]:
            yield middle(block)
        yield tail


class _ControlledStack:
    """Mixed into the block list's class by :func:`install`."""

    def __iter__(self) -> Iterator[Any]:
        blocks = list(self._modules.values())  # type: ignore[attr-defined]
        controller = self.__dict__.get(_CONTROLLER)
        if controller is None:
            return iter(blocks)
        return controller.run(blocks)

    def _get_name(self) -> str:  # the printed model looks as before
        return type(self).__mro__[2].__name__


_CLASSES: dict[type, type] = {}


def _controlled_class(cls: type) -> type:
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Controlled{cls.__name__}", (_ControlledStack, cls), {})
    return _CLASSES[cls]


def block_list(transformer: nn.Module) -> nn.ModuleList | None:
    """The transformer's list of blocks (``blocks`` or ``transformer_blocks``, two or more)."""
    for name in BLOCK_LIST_NAMES:
        value = getattr(transformer, name, None)
        if isinstance(value, nn.ModuleList) and len(value) >= 2:
            return value
    return None


def install(transformer: nn.Module, what: str = "this model") -> nn.ModuleList:
    """Make ``transformer``'s block stack controllable (once; idempotent)."""
    blocks = block_list(transformer)
    if blocks is None:
        raise InputError(
            "cache",
            f"{what}: its transformer ({type(transformer).__name__}) has no list of blocks "
            f"({' or '.join(BLOCK_LIST_NAMES)}, two or more) that a step cache could skip; run it without a cache",
        )
    if not isinstance(blocks, _ControlledStack):
        blocks.__class__ = _controlled_class(type(blocks))
    return blocks


def activate(blocks: nn.ModuleList, controller: StackController | None) -> None:
    """Let ``controller`` run the stack's calls (None: the blocks run as they are)."""
    if controller is None:
        blocks.__dict__.pop(_CONTROLLER, None)
    else:
        blocks.__dict__[_CONTROLLER] = controller


def _hidden_states(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    hidden = args[0] if args else kwargs.get("hidden_states")
    return _tensor(hidden)


def _tensor(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise InputError(
            "cache",
            f"a transformer block gave {type(value).__name__}, not the hidden states tensor: "
            "a step cache cannot stand in for blocks of this kind",
        )
    return value
