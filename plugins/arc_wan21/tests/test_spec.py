"""Wan 2.1's declared defaults and latent space, as the listing and the API show them."""

from __future__ import annotations

import pytest

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import validate_params
from arc_fabric_core.dispatch.plugins import get_plugins
from arc_wan21.spec import WanParams


def test_official_defaults() -> None:
    p = WanParams()
    assert (p.width, p.height, p.num_frames, p.steps, p.guidance, p.shift, p.fps) == (832, 480, 81, 50, 5.0, 5.0, 16)


def test_latent_space_matches_the_vae() -> None:
    spec = get_plugins().model("wan21")
    # 81 frames at 480x832 -> 16 x 21 x 60 x 104 latents (4x in time, 8x in space).
    assert spec.latent_space.latent_shape(81, 480, 832) == (16, 21, 60, 104)
    assert spec.latent_space.family == "wan-vae"


def test_tiny_variant_defaults_are_small_but_valid() -> None:
    spec = get_plugins().model("wan21")
    tiny = spec.resolve("tiny", None)
    p = tiny.params({})
    assert (p.num_frames, p.height, p.width) == (17, 128, 128)
    assert tiny.params({"num_frames": 81}).num_frames == 81  # user values win over variant defaults


@pytest.mark.parametrize("frames", [1, 5, 17, 81, 121])
def test_valid_frame_counts(frames: int) -> None:
    assert validate_params(WanParams, {"num_frames": frames}).num_frames == frames


def test_error_suggests_the_nearest_valid_values() -> None:
    with pytest.raises(InputError, match=r"num_frames: must be 4k\+1.*nearest: 77 or 81 \(got 80\)"):
        validate_params(WanParams, {"num_frames": 80})
    with pytest.raises(InputError, match=r"width: must be a multiple of 16; nearest: 832 or 848 \(got 840\)"):
        validate_params(WanParams, {"width": 840})
