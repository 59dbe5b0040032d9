"""LTX's sizes are bounded by its rotary positions (fractions of 2048 pixels and of 20
seconds), its schedules by the step bound, its runs by the devices' memory."""

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
from arc_ltx.spec import LTXParams


def test_pixels_stop_at_the_rotary_base() -> None:
    assert validate_params(LTXParams, {"height": 2048, "width": 2048}).height == 2048
    with pytest.raises(InputError, match=r"at most 2048 \(LTX's rotary positions are fractions of 2048 pixels") as info:
        validate_params(LTXParams, {"width": 2080})
    assert info.value.field == "width"


@pytest.mark.parametrize(("fps", "most"), [(30, 601), (24, 481), (240, 4801)])
def test_frames_stop_at_twenty_seconds(fps: int, most: int) -> None:
    assert validate_params(LTXParams, {"fps": fps, "num_frames": most}).num_frames == most
    with pytest.raises(InputError, match=f"at most {most}") as info:
        validate_params(LTXParams, {"fps": fps, "num_frames": most + 8})
    assert info.value.field == "num_frames" and "20 s" in info.value.message


def test_schedules_stop_at_the_step_bound() -> None:
    many = [1000 - i * 0.5 for i in range(1001)]
    with pytest.raises(InputError, match="at most 1000") as info:
        validate_params(LTXParams, {"timesteps": many})
    assert info.value.field in ("steps", "timesteps")
    with pytest.raises(InputError, match="at most 1000 entries") as info:
        validate_params(LTXParams, {"multiscale": True, "pass2_timesteps": many})
    assert info.value.field == "pass2_timesteps"


def test_defaults_fit_a_24_gib_gpu_and_the_largest_video_fits_none(tmp_path: Path) -> None:
    plugins = get_plugins()
    cache = ModelCache(plugins, provider=FakeProvider(1, memory=24 * GIB))
    engine = Engine(SessionStore(tmp_path), plugins=plugins, device="cpu", cache=cache)
    spec = plugins.model("ltx")
    for variant in spec.variants:
        engine.plan(ModelRef(spec, variant, None), {})  # nothing loads
    huge = {"num_frames": 601, "height": 2048, "width": 2048}
    with pytest.raises(InputError, match="num_frames=601, height=2048, width=2048 need about") as info:
        engine.plan(ModelRef(spec, spec.variant("2b-dev"), None), huge)
    assert info.value.field == "params"
