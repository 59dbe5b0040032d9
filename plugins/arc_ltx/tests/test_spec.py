"""LTX's declared defaults, input rules and latent spaces, as the listing and the API show them."""

from __future__ import annotations

import json

import pytest

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import ModelRef, validate_params
from arc_fabric_core.dispatch.plugins import get_plugins
from arc_ltx.spec import DISTILLED_PASS1_TIMESTEPS, DISTILLED_TIMESTEPS, PASS2_TIMESTEPS, LTXParams


def test_release_defaults() -> None:
    p = LTXParams()
    assert (p.width, p.height, p.num_frames, p.fps, p.max_sequence_length) == (704, 480, 97, 30, 128)
    assert (p.steps, p.timesteps, p.guidance, p.multiscale) == (30, None, 3.0, False)
    assert p.pass2_timesteps == PASS2_TIMESTEPS == [909, 725, 421]


@pytest.mark.parametrize(
    ("variant", "guidance", "timesteps"),
    [("2b-distilled", 1.0, DISTILLED_TIMESTEPS), ("13b-distilled", 1.0, DISTILLED_TIMESTEPS), ("2b-dev", 3.0, None)],
)
def test_variant_defaults(variant: str, guidance: float, timesteps: list[float] | None) -> None:
    spec = get_plugins().model("ltx")
    ref = ModelRef(spec=spec, variant=spec.variant(variant), weights=None)  # nothing loads
    p = ref.params({})
    assert (p.guidance, p.timesteps) == (guidance, timesteps)
    assert p.steps == (len(timesteps) if timesteps else 30)


def test_distilled_schedules() -> None:
    assert DISTILLED_TIMESTEPS == [1000, 993, 987, 981, 975, 909, 725, 421]
    one = validate_params(LTXParams, {"timestep_schedule": "distilled"})
    assert one.passes() == [8]
    # Multi-scale: the recipe's 7 steps at the reduced size, then 3 after the upsampler.
    two = validate_params(LTXParams, {"timestep_schedule": "distilled", "multiscale": True})
    assert two.timesteps == DISTILLED_PASS1_TIMESTEPS == [1000, 993, 987, 981, 975, 909, 725]
    assert two.passes() == [7, 3]


def test_steps_follow_the_timesteps() -> None:
    p = validate_params(LTXParams, {"timesteps": [1000, 900, 500]})
    assert p.steps == 3 and p.passes() == [3]
    assert validate_params(LTXParams, {"timesteps": [1000, 900, 500], "steps": 3}).steps == 3
    with pytest.raises(InputError, match=r"^steps: timesteps has 3 steps, not 5") as info:
        validate_params(LTXParams, {"timesteps": [1000, 900, 500], "steps": 5})
    assert info.value.field == "steps"
    distilled = r"^steps: the distilled schedule has 8 steps, not 4.*set timestep_schedule=linear-quadratic"
    with pytest.raises(InputError, match=distilled):
        validate_params(LTXParams, {"timestep_schedule": "distilled", "steps": 4})
    # Without timesteps the steps pick LTX's linear-quadratic schedule.
    p = validate_params(LTXParams, {"steps": 12})
    assert p.timesteps is None and p.passes() == [12]


def test_a_stored_session_validates_to_itself() -> None:
    p = validate_params(LTXParams, {"timestep_schedule": "distilled", "multiscale": True})
    assert validate_params(LTXParams, p.model_dump()) == p
    json.dumps(p.model_dump())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"timesteps": []}, r"timesteps: needs at least one timestep"),
        ({"timesteps": [900, 950]}, r"timesteps: timesteps must fall strictly"),
        ({"timesteps": [1000, 0]}, r"timesteps: timesteps are in \(0, 1000\]"),
        ({"pass2_timesteps": [500, 700]}, r"pass2_timesteps: timesteps must fall strictly"),
        ({"multiscale": True, "downscale_factor": 0.05}, r"downscale_factor: makes the first pass 32x0"),
    ],
)
def test_schedule_errors_name_the_field(values: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_params(LTXParams, values)


def test_multiscale_sizes() -> None:
    # 480x704 at 2/3: 320x469, rounded down to 320x448; refined at 640x896, decoded back to 480x704.
    p = validate_params(LTXParams, {"multiscale": True})
    assert (p.pass_size(0), p.pass_size(1)) == ((320, 448), (640, 896))
    assert validate_params(LTXParams, {}).pass_size(0) == (480, 704)


def test_schedule_fields_are_fixed_for_forks() -> None:
    fixed = LTXParams.fixed_fields
    assert {"timesteps", "multiscale", "downscale_factor", "pass2_timesteps", "timestep_schedule", "steps"} <= fixed
    assert "adain_factor" not in fixed and "prompt" not in fixed


def test_latent_spaces() -> None:
    spec = get_plugins().model("ltx")
    # 97 frames at 480x704 -> 128 x 13 x 15 x 22 latents (8x in time, 32x in space).
    assert spec.latent_space.latent_shape(97, 480, 704) == (128, 13, 15, 22)
    real = ModelRef(spec=spec, variant=spec.variant("13b-distilled"), weights=None)
    tiny, tiny_13b = spec.resolve("tiny", None), spec.resolve("tiny-13b", None)
    assert real.latent_space == spec.latent_space and real.latent_space.family == "ltx-vae"
    # The tiny VAE is another latent space (8 channels, 4x4x4), shared by both tiny transformers.
    assert tiny.latent_space == tiny_13b.latent_space != real.latent_space
    assert tiny.latent_space.latent_shape(9, 64, 96) == (8, 3, 16, 24)
    assert spec.tiny_for("2b-distilled").name == "tiny" and spec.tiny_for("13b-dev").name == "tiny-13b"


def test_tiny_variant_defaults_are_small_but_valid() -> None:
    tiny = get_plugins().model("ltx").resolve("tiny", None)
    p = tiny.params({})
    assert (p.num_frames, p.height, p.width, p.steps, p.guidance) == (9, 64, 96, 8, 1.0)
    assert tiny.params({"num_frames": 17}).num_frames == 17  # user values win over variant defaults


@pytest.mark.parametrize("frames", [1, 9, 17, 97, 121, 161])
def test_valid_frame_counts(frames: int) -> None:
    assert validate_params(LTXParams, {"num_frames": frames}).num_frames == frames


def test_error_suggests_the_nearest_valid_values() -> None:
    with pytest.raises(InputError, match=r"num_frames: must be 8k\+1.*nearest: 89 or 97 \(got 96\)"):
        validate_params(LTXParams, {"num_frames": 96})
    with pytest.raises(InputError, match=r"num_frames: must be 8k\+1.*nearest: 97 or 105 \(got 100\)"):
        validate_params(LTXParams, {"num_frames": 100})
    with pytest.raises(InputError, match=r"width: must be a multiple of 32; nearest: 704 or 736 \(got 720\)"):
        validate_params(LTXParams, {"width": 720})
    with pytest.raises(InputError, match=r"height: must be a multiple of 32; nearest: 480 or 512 \(got 500\)"):
        validate_params(LTXParams, {"height": 500})


def test_description_is_json() -> None:
    described = get_plugins().model("ltx").describe()
    json.dumps(described)
    names = [v["name"] for v in described["variants"]]
    assert names == ["2b-distilled", "2b-dev", "13b-distilled", "13b-dev", "tiny", "tiny-13b"]
    assert described["variants"][0]["weights_env"] == "ARC_LTX_2B_DISTILLED_WEIGHTS"
    assert "multiscale" in described["fixed_params"]
