"""LongLive's sizes are bounded by Wan's rotary table (whole blocks of it; the tiny
variant's is shorter), its prompts by the text encoder, its runs by the devices' memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import ModelRef, validate_params
from arc_fabric_core.dispatch.plugins import get_plugins
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.devices import GIB, FakeProvider
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore
from arc_longlive.spec import LongLiveParams


@pytest.mark.parametrize(
    ("values", "field", "most"),
    [
        ({"num_frames": 4101}, "num_frames", 4089),  # 341 blocks of 3 latent frames: 1023 of the 1024
        ({"height": 16400}, "height", 16384),
        ({"sink_frames": 1025}, "sink_frames", 1024),
        ({"window_frames": 1025}, "window_frames", 1024),
    ],
)
def test_sizes_stop_at_the_rotary_table(values: dict, field: str, most: int) -> None:
    with pytest.raises(InputError, match=rf"at most {most} \(Wan's rotary table holds") as info:
        validate_params(LongLiveParams, values)
    assert info.value.field == field
    assert getattr(validate_params(LongLiveParams, {field: most}), field) == most


def test_the_tiny_variant_stops_at_its_own_table() -> None:
    tiny = get_plugins().model("longlive").resolve("tiny", None)
    assert tiny.params({"width": 512}).width == 512
    with pytest.raises(InputError, match="the tiny transformer's rotary table holds 32 positions") as info:
        tiny.params({"width": 528})
    assert info.value.field == "width"


def test_every_prompt_is_bounded() -> None:
    with pytest.raises(InputError, match="at most 10240 characters") as info:
        validate_params(LongLiveParams, {"num_frames": 21, "prompts": ["x" * 10241], "switch_frames": [3]})
    assert info.value.field == "prompts.0"


def test_defaults_fit_a_24_gib_gpu(tmp_path: Path) -> None:
    plugins = get_plugins()
    cache = ModelCache(plugins, provider=FakeProvider(1, memory=24 * GIB))
    engine = Engine(SessionStore(tmp_path), plugins=plugins, device="cpu", cache=cache)
    spec = plugins.model("longlive")
    for variant in spec.variants:
        engine.plan(ModelRef(spec, variant, None), {})  # nothing loads
    with pytest.raises(InputError, match="need about") as info:
        engine.plan(ModelRef(spec, spec.variant("1.3b"), None), {"num_frames": 4089, "height": 4096, "width": 4096})
    assert info.value.field == "params"
