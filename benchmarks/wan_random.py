"""Random-weight Wan models at the sizes the benchmarks time (the cost of a step does not
depend on the weights' values). Imported by the benchmark scripts beside it."""

from __future__ import annotations

from typing import Any

import torch

# The tiny Wan widened until one CFG step takes ~100 ms on a 2-core CPU.
CPU_MID = dict(
    num_attention_heads=4, attention_head_dim=32, text_dim=64, ffn_dim=512, num_layers=6, rope_max_seq_len=64
)
# About 6x CPU_MID's step: the large model of the CPU hybrid benchmark.
CPU_LARGE = dict(
    num_attention_heads=8, attention_head_dim=32, text_dim=64, ffn_dim=2048, num_layers=16, rope_max_seq_len=64
)
# The published transformer configurations of Wan2.1-T2V-1.3B and -14B.
WAN_1_3B = dict(
    num_attention_heads=12,
    attention_head_dim=128,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    rope_max_seq_len=1024,
    eps=1e-6,
)
WAN_14B = {**WAN_1_3B, "num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40}


def build_components(preset: dict[str, Any], transformer_config: dict[str, Any] | None = None) -> Any:
    """WanComponents with a random transformer of ``preset["transformer"]`` (or
    ``transformer_config``) in ``preset["dtype"]`` on ``preset["device"]``, a small text
    encoder of width ``preset["text_dim"]`` and the tiny VAE (nothing is decoded), or the VAE
    of ``preset["vae"]`` (a config; ``{}``: the published Wan 2.1 VAE) where one is given."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from arc_fabric_core.kit.tiny_text import t5_tokenizer
    from arc_fabric_core.kit.tiny_wan import SCHEDULER_CONFIG, TEXT_ENCODER_CONFIG, TRANSFORMER_CONFIG, VAE_CONFIG
    from arc_wan21.plugin import WanComponents

    device, dtype = torch.device(preset["device"]), preset["dtype"]
    torch.manual_seed(0)
    tokenizer = t5_tokenizer()
    text_cfg = {**TEXT_ENCODER_CONFIG, "d_model": preset["text_dim"]}
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), **text_cfg)).eval()
    with torch.device(device):
        config = transformer_config if transformer_config is not None else preset["transformer"]
        transformer = WanTransformer3DModel(**{**TRANSFORMER_CONFIG, **config}).eval()
    # As from_pretrained(torch_dtype=...) does: the model's float32-only modules stay float32.
    keep = tuple(getattr(transformer, "_keep_in_fp32_modules", None) or ())
    for name, module in transformer.named_modules():
        if not any(k in name.split(".") for k in keep):
            for param in module.parameters(recurse=False):
                param.data = param.data.to(dtype)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder.to(device, dtype),
        vae=AutoencoderKLWan(**preset.get("vae", VAE_CONFIG)).eval().to(device),
        transformer=transformer,
        scheduler=UniPCMultistepScheduler(**SCHEDULER_CONFIG),
    )
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.transformer, pipe.text_encoder, pipe.vae):
        module.requires_grad_(False)
    return WanComponents(pipe=pipe, device=device)
