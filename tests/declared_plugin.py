"""Test plugins that declare their model's capabilities: the toy (a whole-video model)
and the blocks model (autoregressive) under other names, each with a ``Capabilities``
declaration in its spec and the stage hooks of the model it copies."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from blocks_plugin import Blocks

from arc_fabric_core.contract.capabilities import Capabilities
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_toy import plugin as toy


class DeclaredToy:
    """The toy as model ``name``, declaring ``capabilities``."""

    def __init__(self, name: str, capabilities: Capabilities) -> None:
        self.name = name
        self.capabilities = capabilities

    @hookimpl
    def arc_register_models(self, register: Any) -> None:
        register(
            replace(
                toy.TOY,
                name=self.name,
                description="The toy, with declared capabilities.",
                capabilities=self.capabilities,
            )
        )

    arc_load = staticmethod(toy.arc_load)
    arc_encode = staticmethod(toy.arc_encode)
    arc_schedule = staticmethod(toy.arc_schedule)
    arc_prepare_latents = staticmethod(toy.arc_prepare_latents)
    arc_denoise_step = staticmethod(toy.arc_denoise_step)
    arc_decode = staticmethod(toy.arc_decode)


class DeclaredBlocks(Blocks):
    """The blocks model (autoregressive) as model ``name``, declaring ``capabilities``."""

    def __init__(self, name: str, capabilities: Capabilities) -> None:
        self.name = name
        self.capabilities = capabilities

    @hookimpl
    def arc_register_models(self, register: Any) -> None:
        register(
            replace(
                toy.TOY,
                name=self.name,
                description="Blocks, with declared capabilities.",
                capabilities=self.capabilities,
            )
        )
