"""Whether a run's working memory can fit on any device that exists, known before it is
queued or anything loads.

The need is what the model's plugin declares for the run beside the weights
(``arc_activation_bytes``: its transformer call and its VAE decode at the requested
size), else a floor: the engine holds the latents and a step's output at once, in
float32. It is compared with the largest device there is (a GPU, or the CPU's RAM
budget), whole: what other models or processes hold now may be freed by the time the
run starts, so only a run that no device could ever hold is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import ModelRef
from arc_fabric_core.contract.params import GenerationParams
from arc_fabric_core.runtime.devices import GIB, DeviceInfo

FLOAT32 = 4


def latent_bytes(ref: ModelRef, params: GenerationParams) -> int:
    """Bytes of the run's latents in float32 (as the engine holds them)."""
    shape = ref.latent_space.latent_shape(params.num_frames, params.height, params.width)
    return math.prod(shape) * FLOAT32


def working_floor(ref: ModelRef, params: GenerationParams) -> int:
    """The least a run needs beside the weights when its plugin does not say: the latents
    and one step's output (the model's prediction), both alive at every step."""
    return 2 * latent_bytes(ref, params)


def check_fits(ref: ModelRef, params: GenerationParams, need: int, devices: Iterable[DeviceInfo]) -> None:
    """Refuse a run needing ``need`` bytes beside its weights when even the largest of
    ``devices`` has less memory in all (devices of unknown size are not compared)."""
    known = [d for d in devices if d.memory_total > 0]
    if not known:
        return
    largest = max(known, key=lambda d: d.memory_total)
    if need <= largest.memory_total:
        return
    raise InputError(
        "params",
        f"num_frames={params.num_frames}, height={params.height}, width={params.width} need about "
        f"{need / GIB:.1f} GiB of working memory on {ref.label} (beside its weights), more than the largest device "
        f"here has ({largest.id}, {largest.name}: {largest.memory_total / GIB:.1f} GiB); "
        "lower num_frames, height or width",
    )
