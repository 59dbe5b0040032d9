"""Wan's sizes are bounded by its rotary table (the tiny transformer's is shorter), its
prompts by its text encoder, its runs by the memory of the devices there are."""

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
from arc_wan21.spec import WanParams


@pytest.mark.parametrize(
    ("field", "most", "over"), [("num_frames", 4093, 4097), ("height", 16384, 16400), ("width", 16384, 16400)]
)
def test_sizes_stop_at_the_rotary_table(field: str, most: int, over: int) -> None:
    assert getattr(validate_params(WanParams, {field: most}), field) == most
    with pytest.raises(InputError) as info:
        validate_params(WanParams, {field: over})
    assert info.value.field == field
    assert info.value.message.startswith(f"at most {most} (Wan's rotary table holds 1024 positions")
    assert WanParams.model_json_schema()["properties"][field]["maximum"] == most


def test_the_tiny_variant_stops_at_its_own_table() -> None:
    tiny = get_plugins().model("wan21").resolve("tiny", None)
    assert tiny.params({"num_frames": 125, "height": 512}).num_frames == 125
    for values, field in (({"num_frames": 129}, "num_frames"), ({"height": 528}, "height")):
        with pytest.raises(InputError, match="the tiny transformer's rotary table holds 32 positions") as info:
            tiny.params(values)
        assert info.value.field == field


def test_prompts_stop_at_twenty_characters_a_kept_token() -> None:
    assert len(validate_params(WanParams, {"prompt": "x" * 10240}).prompt) == 10240
    for field in ("prompt", "negative_prompt"):
        with pytest.raises(InputError, match=r"at most 10240 characters .*got 10241 characters") as info:
            validate_params(WanParams, {field: "x" * 10241})
        assert info.value.field == field


def test_defaults_fit_a_24_gib_gpu_and_a_huge_video_fits_none(tmp_path: Path) -> None:
    plugins = get_plugins()
    cache = ModelCache(plugins, provider=FakeProvider(1, memory=24 * GIB))
    engine = Engine(SessionStore(tmp_path), plugins=plugins, device="cpu", cache=cache)
    spec = plugins.model("wan21")
    for variant in spec.variants:
        engine.plan(ModelRef(spec, variant, None), {})  # nothing loads
    with pytest.raises(InputError, match=r"num_frames=4093, height=16384, width=16384 need about \d+") as info:
        engine.plan(ModelRef(spec, spec.variant("1.3b"), None), {"num_frames": 4093, "height": 16384, "width": 16384})
    assert info.value.field == "params"
