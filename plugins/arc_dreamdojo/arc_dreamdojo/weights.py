"""DreamDojo's published checkpoints onto :class:`~arc_dreamdojo.network.DreamDojoNet`.

A checkpoint folder (``{2B,14B}_<robot>_post-train/iter_000050000/`` on the hub) holds the
network either as a torch DCP folder ``model/`` (``__{rank}_0.distcp`` + ``.metadata``, the
training checkpoint: ``net.*`` and its EMA ``net_ema.*``, flat, as the authors' DCP
checkpointer saves them) or, after the authors' ``convert_distcp_to_pt.py``, as flat
``.pt`` state dicts: ``model.pt`` (both), ``model_ema_fp32.pt`` / ``model_ema_bf16.pt``
(the EMA renamed ``net_ema.`` -> ``net.``; bf16 is what their inference loads).
Inference uses the EMA, so ``net_ema.*`` is loaded wherever it is present, else ``net.*``.

Names follow diffusers' Cosmos 2.x conversion (``convert_cosmos_to_diffusers.py``), written
here as rules per module rather than its substring replacements, so a name we do not know
is refused instead of half-renamed. Dropped, as there: ``accum_*`` (training counters of
the authors' ``WeightTrainingStat``), ``pos_embedder.{seq,dim_spatial_range,
dim_temporal_range}`` (RoPE tables, which diffusers recomputes from the config) and
``*._extra_state`` (Transformer Engine's FP8 metadata of its RMSNorms: no weights).

Patch embedding: the authors' ``x_embedder`` sees ``[latent 16, condition mask 1, padding
mask 1]`` (their ``in_channels + 1`` for the condition mask, ``+ 1`` for the padding mask)
and flattens a patch as ``(c, t, h, w)`` (``b c (t r) (h m) (w n) -> b t h w (c r m n)``);
diffusers concatenates the same channels in the same order and flattens ``(c, t, h, w)``
too (``permute(0, 2, 4, 6, 1, 3, 5, 7)``), so ``x_embedder.proj.1.weight`` [D, 18·1·2·2]
is ``patch_embed.proj.weight`` as is. The output side agrees as well: both unpatchify
``(h, w, t, C)``.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from torch import nn
from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

from arc_dreamdojo.network import DreamDojoNet
from arc_fabric_core.contract.errors import WeightsError

# The folder layout, as published and as convert_distcp_to_pt.py writes it.
NET_FILES: tuple[str, ...] = ("model_ema_bf16.pt", "model_ema_fp32.pt", "model.pt")  # in order of preference
DCP_FOLDER = "model"
DCP_METADATA = ".metadata"
VAE_FILE = "tokenizer.pth"  # Wan2.1_VAE.pth under the authors' name
VAE_FOLDER = "vae"  # a diffusers AutoencoderKLWan folder, if converted already
TEXT_FILE = "cr1_empty_string_text_embeddings.pt"  # the empty prompt through Cosmos-Reason1
STATS_FILE = "GR1_unified_stats.json"  # the authors' shared_meta/GR1_unified_stats.json
STATS_FOLDER = "shared_meta"

NET_PREFIX = "net."
EMA_PREFIX = "net_ema."
FIELD = "weights"
_SHOWN = 5  # keys named in a message before "+N more"

_DROPPED = frozenset(
    {
        "accum_video_sample_counter",
        "accum_image_sample_counter",
        "accum_iteration",
        "accum_train_in_hours",
        "pos_embedder.seq",
        "pos_embedder.dim_spatial_range",
        "pos_embedder.dim_temporal_range",
    }
)
# Whole modules whose name is the same up to the place they sit in (leaf kept).
_MODULES = {
    "x_embedder.proj.1": "patch_embed.proj",
    "t_embedder.1.linear_1": "time_embed.t_embedder.linear_1",
    "t_embedder.1.linear_2": "time_embed.t_embedder.linear_2",
    "t_embedding_norm": "time_embed.norm",
    "final_layer.adaln_modulation.1": "norm_out.linear_1",
    "final_layer.adaln_modulation.2": "norm_out.linear_2",
    "final_layer.linear": "proj_out",
    "crossattn_proj.0": "crossattn_proj.0",
}
_ATTENTION = {"self_attn": "attn1", "cross_attn": "attn2"}
_ATTENTION_PARTS = {
    "q_proj": "to_q",
    "k_proj": "to_k",
    "v_proj": "to_v",
    "output_proj": "to_out.0",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}
_ADALN = {
    "adaln_modulation_self_attn": "norm1",
    "adaln_modulation_cross_attn": "norm2",
    "adaln_modulation_mlp": "norm3",
}
_ADALN_LINEARS = {"1": "linear_1", "2": "linear_2"}  # index 0 of their Sequential is the SiLU
_MLP = {"layer1": "ff.net.0.proj", "layer2": "ff.net.2"}
_ACTION = re.compile(r"action_embedder_B_(D|3D)\.fc[12]")
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def _body(key: str) -> str:
    for prefix in (EMA_PREFIX, NET_PREFIX):
        if key.startswith(prefix):
            return key[len(prefix) :]
    raise KeyError(key)


def _block_module(index: str, rest: str) -> str | None:
    parts = rest.split(".")
    if len(parts) == 2 and parts[0] in _ATTENTION and parts[1] in _ATTENTION_PARTS:
        return f"transformer_blocks.{index}.{_ATTENTION[parts[0]]}.{_ATTENTION_PARTS[parts[1]]}"
    if len(parts) == 2 and parts[0] in _ADALN and parts[1] in _ADALN_LINEARS:
        return f"transformer_blocks.{index}.{_ADALN[parts[0]]}.{_ADALN_LINEARS[parts[1]]}"
    if len(parts) == 2 and parts[0] == "mlp" and parts[1] in _MLP:
        return f"transformer_blocks.{index}.{_MLP[parts[1]]}"
    return None


def author_to_ours(key: str) -> str | None:
    """One key of the authors' checkpoint (``net.*`` or ``net_ema.*``) -> our state-dict key,
    or None for a key that holds no weight of ours (see the module's docstring).
    A key outside the authors' DiT raises KeyError."""
    body = _body(key)
    if body in _DROPPED or body.endswith("._extra_state"):
        return None
    module, _, leaf = body.rpartition(".")
    if _ACTION.fullmatch(module):
        return body  # the action MLPs keep their names and sit beside the transformer
    ours = _MODULES.get(module)
    if ours is None and (block := _BLOCK.fullmatch(module)):
        ours = _block_module(block.group(1), block.group(2))
    if ours is None:
        raise KeyError(key)
    return f"transformer.{ours}.{leaf}"


def _droppable(key: str) -> bool:
    try:
        return author_to_ours(key) is None
    except KeyError:
        return False


def _more(items: list[str]) -> str:
    return f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""


def _listing(keys: Iterable[str]) -> str:
    keys = list(keys)
    return ", ".join(keys[:_SHOWN]) + _more(keys)


# ---------------------------------------------------------------------------- the network


def find_net_source(folder: Path) -> Path | None:
    """The file or DCP folder the network would be read from, or None."""
    for name in NET_FILES:
        if (folder / name).is_file():
            return folder / name
    for candidate in (folder / DCP_FOLDER, folder):  # the iteration folder, or model/ itself
        if (candidate / DCP_METADATA).is_file():
            return candidate
    return None


def _torch_load(path: Path) -> Any:
    # Older Transformer Engine wrote its _extra_state as io.BytesIO (an empty one pickles
    # through bytes()); allowing those two keeps weights_only's guarantee: data, no code.
    with torch.serialization.safe_globals([io.BytesIO, bytes]):
        try:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # mmap needs the zip format; an old-format file loads whole
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(FIELD, f"{path} is not a loadable weights-only torch file ({exc})") from None


def _unwrap(obj: Any, path: Path) -> dict[str, Any]:
    # convert_distcp_to_pt.py saves flat dicts; a trainer-style wrapper is accepted too.
    if isinstance(obj, dict) and not any(str(k).startswith(NET_PREFIX) for k in obj):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), dict):
                return obj[wrapper]
    if not isinstance(obj, dict):
        raise WeightsError(FIELD, f"{path} holds a {type(obj).__name__}, not a state dict")
    return obj


def _tensors_only(state: Mapping[str, Any], source: Path) -> dict[str, torch.Tensor]:
    # Non-tensors may only be dropped keys (Transformer Engine's BytesIO _extra_state).
    odd = [k for k, v in state.items() if not isinstance(v, torch.Tensor) and not _droppable(k)]
    if odd:
        raise WeightsError(FIELD, f"{source}: {len(odd)} entries are not tensors: {_listing(odd)}")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _load_dcp(folder: Path) -> dict[str, torch.Tensor]:
    """The DCP folder's tensors read with torch's own DCP loader, in one process, no process
    group: a target dict built from ``.metadata`` (global shapes and dtypes), filled by
    ``dcp.load(..., no_dist=True)``, which reassembles the ranks' shards. Only the EMA is
    read when the folder holds one (half the memory); byte entries, which DCP would unpickle
    with weights_only=False, are never read: they may only be dropped keys."""
    reader = dcp.FileSystemReader(str(folder))
    entries = reader.read_metadata().state_dict_metadata
    wanted = EMA_PREFIX if any(k.startswith(EMA_PREFIX) for k in entries) else NET_PREFIX
    target: dict[str, torch.Tensor] = {}
    odd: list[str] = []
    for key, entry in entries.items():
        if wanted == EMA_PREFIX and key.startswith(NET_PREFIX):
            continue  # the raw training weights beside the EMA
        if isinstance(entry, TensorStorageMetadata):
            target[key] = torch.empty(entry.size, dtype=entry.properties.dtype)
        elif not (isinstance(entry, BytesStorageMetadata) and _droppable(key)):
            odd.append(key)
    if odd:
        raise WeightsError(FIELD, f"{folder}: {len(odd)} entries are not tensors: {_listing(odd)}")
    with warnings.catch_warnings():  # one process is the intent, not a fallback to warn about
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.load(target, storage_reader=reader, no_dist=True)
    return target


def load_net_state(folder: Path) -> dict[str, torch.Tensor]:
    """The network's state dict in the authors' names, from the first of :data:`NET_FILES`
    in ``folder``, else from its DCP folder ``model/``."""
    source = find_net_source(folder)
    if source is None:
        raise WeightsError(FIELD, _NET_MISSING.format(folder=folder))
    if source.is_dir():
        return _load_dcp(source)
    return _tensors_only(_unwrap(_torch_load(source), source), source)


def _strict_load(module: nn.Module, state: Mapping[str, torch.Tensor], origin: Mapping[str, str], what: str) -> None:
    """Load ``state`` (our names) into ``module`` refusing any difference in keys or shapes;
    ``origin`` gives each of our names the checkpoint's name for the messages."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in state]
    if missing:
        raise WeightsError(FIELD, f"{what} lacks {len(missing)} of the model's tensors: {_listing(missing)}")
    bad = [
        f"{origin.get(k, k)} is {tuple(v.shape)} in {what}, {tuple(ours[k].shape)} in the model"
        for k, v in state.items()
        if tuple(v.shape) != tuple(ours[k].shape)
    ]
    if bad:
        raise WeightsError(FIELD, f"shape mismatch: {'; '.join(bad[:_SHOWN])}" + _more(bad))
    module.load_state_dict(dict(state), strict=True)  # copies into the model's own dtype


def apply_net_state(net: DreamDojoNet, state: Mapping[str, torch.Tensor]) -> None:
    """Copy the authors' state dict into ``net``: the ``net_ema.*`` entries where there are
    any (the raw ``net.*`` then ignored), else ``net.*``. Every other key, a key that maps to
    no tensor of ``net``, a tensor of ``net`` left unfilled, or a shape that differs, is a
    WeightsError naming the keys."""
    wanted = EMA_PREFIX if any(k.startswith(EMA_PREFIX) for k in state) else NET_PREFIX
    ours = net.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if wanted == EMA_PREFIX and key.startswith(NET_PREFIX):
            continue
        try:
            name = author_to_ours(key)  # a key under neither prefix is a KeyError too
        except KeyError:
            unknown.append(key)
            continue
        if name is None:
            continue
        if name not in ours or name in mapped:
            unknown.append(key)
            continue
        mapped[name], origin[name] = value, key
    if unknown:
        raise WeightsError(
            FIELD, f"{len(unknown)} checkpoint keys match nothing in DreamDojo's network: {_listing(unknown)}"
        )
    _strict_load(net, mapped, origin, "the checkpoint")


# ---------------------------------------------------------------------------- the VAE


def load_vae(folder: Path, dtype: torch.dtype, config: Mapping[str, Any] | None = None) -> AutoencoderKLWan:
    """The Wan 2.1 VAE from ``folder/vae/`` (diffusers) or ``folder/tokenizer.pth`` (Wan's
    original state dict, renamed by diffusers' ``convert_wan_vae_to_diffusers``). ``config``
    builds the model for a ``.pth``: None is diffusers' default AutoencoderKLWan, which is the
    real Wan 2.1 VAE (base_dim 96, z_dim 16); tiny tests pass their own. diffusers' converter
    assumes Wan 2.1's layout (num_res_blocks=2, a decoder shortcut only in its second block)."""
    if (folder / VAE_FOLDER / "config.json").is_file():
        return AutoencoderKLWan.from_pretrained(folder / VAE_FOLDER, torch_dtype=dtype).eval()
    path = folder / VAE_FILE
    if not path.is_file():
        raise WeightsError(FIELD, _VAE_MISSING.format(folder=folder))
    original = _tensors_only(_unwrap(_torch_load(path), path), path)
    converted = convert_wan_vae_to_diffusers(original)
    vae = AutoencoderKLWan(**dict(config or {}))
    unknown = [k for k in converted if k not in vae.state_dict()]
    if unknown:
        raise WeightsError(FIELD, f"{len(unknown)} keys of {path} match nothing in the Wan VAE: {_listing(unknown)}")
    _strict_load(vae, converted, {}, str(path))
    return vae.to(dtype).eval()


# ---------------------------------------------------------------------------- the text


def load_text_embedding(path: Path) -> torch.Tensor:
    """The precomputed empty-prompt embedding as ``[1, L, C]`` ([1, 512, 100352] for the
    real one). The authors' loaders accept a tensor ``[L, C]`` or ``[1, L, C]``, or a
    list/tuple holding it; their dataset indexes ``[0]`` and counts ``shape[0]`` tokens, so
    the published file is ``[1, L, C]``."""
    if not path.is_file():
        raise WeightsError(FIELD, f"{path} does not exist: {TEXT_FILE} is Cosmos-Reason1's empty-prompt embedding")
    embedding = _torch_load(path)
    if isinstance(embedding, list | tuple) and embedding:
        embedding = embedding[0]
    if not isinstance(embedding, torch.Tensor):
        raise WeightsError(FIELD, f"{path} holds a {type(embedding).__name__}, not a tensor")
    if embedding.dim() == 2:
        embedding = embedding.unsqueeze(0)
    if embedding.dim() != 3 or embedding.shape[0] != 1:
        raise WeightsError(FIELD, f"{path} holds a {tuple(embedding.shape)} tensor; expected [L, C] or [1, L, C]")
    return embedding


# ---------------------------------------------------------------------------- the folder


def stats_path(folder: Path) -> Path | None:
    """The action statistics, beside the weights or under the authors' ``shared_meta/``."""
    for path in (folder / STATS_FILE, folder / STATS_FOLDER / STATS_FILE):
        if path.is_file():
            return path
    return None


_NET_MISSING = (
    "no DreamDojo network in {folder}: expected one of " + ", ".join(NET_FILES) + f", or a DCP folder {DCP_FOLDER}/ "
    f"holding {DCP_METADATA} and __*_0.distcp"
)
_VAE_MISSING = (
    f"no VAE in {{folder}}: expected {VAE_FILE} (Wan2.1_VAE.pth) or a diffusers folder {VAE_FOLDER}/ with config.json"
)


def check_folder(folder: Path) -> list[str]:
    """What a DreamDojo folder lacks, one line per missing piece (empty: complete), so that a
    caller can refuse before any model loads."""
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems: list[str] = []
    source = find_net_source(folder)
    if source is None:
        problems.append(_NET_MISSING.format(folder=folder))
    elif source.is_dir() and not any(source.glob("__*_0.distcp")):
        problems.append(f"{source} has {DCP_METADATA} but no __*_0.distcp shards")
    if not (folder / VAE_FOLDER / "config.json").is_file() and not (folder / VAE_FILE).is_file():
        problems.append(_VAE_MISSING.format(folder=folder))
    if not (folder / TEXT_FILE).is_file():
        problems.append(
            f"no text embedding in {folder}: expected {TEXT_FILE} (nvidia/Cosmos-Predict2.5-2B, robot/action-cond/)"
        )
    if stats_path(folder) is None:
        problems.append(
            f"no action statistics in {folder}: expected {STATS_FILE} or {STATS_FOLDER}/{STATS_FILE} "
            "(the DreamDojo repository's shared_meta/)"
        )
    return problems
