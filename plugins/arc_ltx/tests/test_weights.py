"""Real variants load from local folders in the published diffusers layout through the same
code as tiny; what is missing is said before anything loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from arc_fabric_core.contract.errors import WeightsError
from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore

ENVS = [f"ARC_LTX_{v}_WEIGHTS" for v in ("2B_DISTILLED", "2B_DEV", "13B_DISTILLED", "13B_DEV", "UPSAMPLER")]
MULTISCALE = {"multiscale": True, "timestep_schedule": "distilled", "timesteps": None}


@pytest.fixture(autouse=True)
def _no_configured_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ENVS:
        monkeypatch.delenv(env, raising=False)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(SessionStore(tmp_path / "store"), device="cpu")


@pytest.fixture
def real_folder(tmp_path: Path, tiny_folder: Path) -> Path:
    """The tiny checkpoint where a user keeps a real one (no latent upsampler in it)."""
    folder = tmp_path / "LTX-Video-0.9.8-2B-distilled"
    shutil.copytree(tiny_folder, folder)
    return folder


def final(engine: Engine, params: dict, variant: str, weights: str | None = None) -> torch.Tensor:
    session = engine.create("ltx", params, variant=variant, weights=weights)
    engine.run(session)
    return engine.final_latents(session)


def test_real_variant_loads_a_checkpoint_in_the_published_layout(
    engine: Engine, real_folder: Path, small: dict
) -> None:
    # The tiny checkpoint is an LTXConditionPipeline folder, so 2b-distilled pointed at it must
    # load it and give exactly what the tiny variant gives.
    session = engine.create("ltx", small, variant="2b-distilled", weights=str(real_folder))
    assert session.ref.weights == real_folder.resolve()
    engine.run(session)
    assert torch.equal(engine.final_latents(session), final(engine, small, "tiny"))


def test_weights_from_environment(monkeypatch: pytest.MonkeyPatch, real_folder: Path, engine: Engine) -> None:
    monkeypatch.setenv("ARC_LTX_13B_DEV_WEIGHTS", str(real_folder))
    ref = engine.resolve("ltx", "auto")
    assert ref.variant.name == "13b-dev" and ref.weights == real_folder.resolve()


def test_auto_without_weights_is_tiny(engine: Engine) -> None:
    assert engine.resolve("ltx", "auto").variant.name == "tiny"


@pytest.mark.parametrize(
    "missing", ["vae", "transformer", "text_encoder", "tokenizer", "scheduler", "model_index.json"]
)
def test_incomplete_checkpoint_is_refused_before_loading(
    engine: Engine, real_folder: Path, missing: str, small: dict
) -> None:
    target = real_folder / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(WeightsError) as info:
        engine.create("ltx", small, variant="2b-distilled", weights=str(real_folder))
    assert info.value.field == "model.weights"
    assert missing in str(info.value) and "model.variant=tiny" in str(info.value)
    assert engine.cache.loads == 0


def test_missing_weights_name_the_variable_and_the_tiny_variant(engine: Engine, small: dict) -> None:
    with pytest.raises(WeightsError, match=r"ARC_LTX_13B_DISTILLED_WEIGHTS.*model\.variant=tiny"):
        engine.create("ltx", small, variant="13b-distilled")


def test_multiscale_without_an_upsampler_is_refused_before_any_compute(
    engine: Engine, real_folder: Path, small: dict
) -> None:
    with pytest.raises(WeightsError) as info:
        engine.create("ltx", {**small, **MULTISCALE}, variant="2b-distilled", weights=str(real_folder))
    message = str(info.value)
    assert info.value.field == "model.weights"
    assert "ARC_LTX_UPSAMPLER_WEIGHTS" in message and f"{real_folder}/latent_upsampler/" in message
    assert engine.cache.loads == 0 and engine.store.list_ids() == []
    # One pass needs no upsampler.
    engine.create("ltx", small, variant="2b-distilled", weights=str(real_folder))


def test_upsampler_variable_pointing_at_nothing_is_refused(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, real_folder: Path, tmp_path: Path, small: dict
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("ARC_LTX_UPSAMPLER_WEIGHTS", str(empty))
    with pytest.raises(WeightsError, match=r"holds no latent upsampler \(no config.json\)"):
        engine.create("ltx", {**small, **MULTISCALE}, variant="2b-distilled", weights=str(real_folder))
    assert engine.cache.loads == 0


@pytest.mark.multiscale
@pytest.mark.parametrize("where", ["subfolder", "variable", "pipeline-folder"])
def test_multiscale_real_variant_finds_its_upsampler(
    monkeypatch: pytest.MonkeyPatch,
    engine: Engine,
    real_folder: Path,
    tiny_upsampler: Path,
    tmp_path: Path,
    small: dict,
    where: str,
) -> None:
    if where == "subfolder":  # <weights>/latent_upsampler/
        shutil.copytree(tiny_upsampler, real_folder / "latent_upsampler")
    elif where == "variable":  # an LTXLatentUpsamplerModel folder
        monkeypatch.setenv("ARC_LTX_UPSAMPLER_WEIGHTS", str(tiny_upsampler))
    else:  # an LTXLatentUpsamplePipeline folder: the model in its latent_upsampler/
        shutil.copytree(tiny_upsampler, tmp_path / "upsampler-pipeline" / "latent_upsampler")
        monkeypatch.setenv("ARC_LTX_UPSAMPLER_WEIGHTS", str(tmp_path / "upsampler-pipeline"))
    params = {**small, **MULTISCALE}
    ours = final(engine, params, "2b-distilled", str(real_folder))
    assert torch.equal(ours, final(engine, params, "tiny"))


def test_tiny_checkpoints_are_built_once_and_reused(tiny_folder: Path, tiny_upsampler: Path) -> None:
    from arc_ltx.tiny import ensure_tiny_checkpoint, ensure_tiny_upsampler

    stamp = (tiny_folder / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_checkpoint() == tiny_folder
    assert (tiny_folder / "model_index.json").stat().st_mtime_ns == stamp
    for component in ("scheduler", "text_encoder", "tokenizer", "transformer", "vae"):
        assert (tiny_folder / component).is_dir()
    assert ensure_tiny_upsampler() == tiny_upsampler and (tiny_upsampler / "config.json").is_file()


def test_tiny_13b_shares_everything_but_the_transformer(engine: Engine) -> None:
    tiny, large = (engine.cache.get(engine.resolve("ltx", v), engine.device, "auto") for v in ("tiny", "tiny-13b"))
    for name in ("vae", "text_encoder"):
        a, b = getattr(tiny.pipe, name).state_dict(), getattr(large.pipe, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert tiny.pipe.tokenizer("a red fox").input_ids == large.pipe.tokenizer("a red fox").input_ids
    layers = (len(m.pipe.transformer.transformer_blocks) for m in (tiny, large))
    assert next(layers) < next(layers)
