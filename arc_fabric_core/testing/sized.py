"""Models of chosen sizes with real checkpoint folders, for memory tests and benchmarks.

Each model's weights are one bf16 safetensors file of the requested size, so the model
cache reads its need from the header as it would for a real checkpoint, and a load
really allocates that memory. The models denoise in closed form (cheap) so an engine
can run whole sessions on them.

    plugin = SizedModels(tmp_path, {"a": 4 * MIB, "b": 4 * MIB}, margin=MIB)
    plugins = Plugins(load_entrypoints=False); plugins.register(plugin, name="sized")
    ref = plugins.model("a").resolve("default", plugin.folder("a"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.models import LatentSpace, ModelRef, ModelSpec, VariantSpec
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.contract.schedule import Schedule

MIB = 2**20
LATENTS = LatentSpace(family="sized", channels=3, temporal_compression=1, spatial_compression=1)


class SizedParams(GenerationParams):
    steps: int = 4
    num_frames: int = 2
    height: int = 8
    width: int = 8
    guidance: float = 1.0


@dataclass
class SizedComponents:
    weights: dict[str, torch.Tensor]
    device: torch.device


class SizedModels:
    """A plugin registering one model per entry of ``sizes`` (name -> bytes of weights)."""

    def __init__(self, root: Path, sizes: dict[str, int], margin: int = 0) -> None:
        from safetensors.torch import save_file

        self.root = Path(root)
        self.sizes = dict(sizes)
        self.margin = margin
        self.loads: list[str] = []
        for name, nbytes in self.sizes.items():
            folder = self.folder(name)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "weights.safetensors"
            if not path.is_file():
                save_file({"w": torch.full((nbytes // 2,), 0.5, dtype=torch.bfloat16)}, str(path))

    def folder(self, name: str) -> Path:
        return self.root / name

    @hookimpl
    def arc_register_models(self, register: Any) -> None:
        for name, nbytes in self.sizes.items():
            register(
                ModelSpec(
                    name=name,
                    description=f"{nbytes / MIB:.0f} MiB of bf16 weights, closed-form denoising.",
                    params=SizedParams,
                    latent_space=LATENTS,
                    variants=(VariantSpec(name="default", description="Weights from a local folder."),),
                )
            )

    @hookimpl
    def arc_load(self, model: ModelRef, device: torch.device) -> SizedComponents:
        from safetensors.torch import load_file

        assert model.weights is not None
        self.loads.append(model.spec.name)
        weights = load_file(str(Path(model.weights) / "weights.safetensors"), device="cpu")
        return SizedComponents({k: v.to(device) for k, v in weights.items()}, device)

    @hookimpl
    def arc_activation_bytes(self) -> int:
        return self.margin

    @hookimpl
    def arc_encode(self, components: SizedComponents) -> dict[str, torch.Tensor]:
        return {"tint": torch.full((1, 3, 1, 1, 1), 0.25, device=components.device)}

    @hookimpl
    def arc_schedule(self, params: SizedParams) -> Schedule:
        from diffusers import FlowMatchEulerDiscreteScheduler

        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
        scheduler.set_timesteps(params.steps)
        scheduler.set_begin_index(0)
        return Schedule(timesteps=scheduler.timesteps, scheduler=scheduler, sigmas=scheduler.sigmas)

    @hookimpl
    def arc_prepare_latents(self, params: SizedParams, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((1, 3, params.num_frames, params.height, params.width), generator=generator)

    @hookimpl
    def arc_denoise_step(
        self, components: SizedComponents, latents: torch.Tensor, step: Any, conditioning: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        scale = float(components.weights["w"][0])  # the weights take part, so they must be there
        return (latents - conditioning["tint"]) * scale / max(step.sigma or 1.0, 1e-4)

    @hookimpl
    def arc_decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)
