"""LongLive's attention processors go through diffusers' attention dispatcher: the
native backend gives what torch SDPA called directly gives, bit for bit, and a backend
set on the model (``set_attention_backend``) reaches them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from arc_longlive.causal import CausalWan, _CrossAttention, _SelfAttention, attention
from arc_longlive.tiny import TRANSFORMER_CONFIG as TINY


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("masked", [False, True])
def test_native_dispatch_equals_sdpa_bit_for_bit(dtype: torch.dtype, masked: bool) -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 48, 2, 16, generator=g).to(dtype)  # [B, S, heads, dim]
    k, v = (torch.randn(1, 80, 2, 16, generator=g).to(dtype) for _ in range(2))
    mask = None
    if masked:
        mask = torch.rand(48, 80, generator=g) > 0.5
        mask[:, 0] = True
    direct = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    assert torch.equal(attention(q, k, v, mask, None), direct.transpose(1, 2))


def test_a_backend_set_on_the_model_reaches_the_processors() -> None:
    from diffusers import WanTransformer3DModel
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    torch.manual_seed(0)
    model = CausalWan(WanTransformer3DModel(**TINY).eval())
    processors = [b.attn1.processor for b in model.transformer.blocks] + [
        b.attn2.processor for b in model.transformer.blocks
    ]
    assert {type(p) for p in processors} == {_SelfAttention, _CrossAttention}
    before = _AttentionBackendRegistry.get_active_backend()[0]
    try:
        model.transformer.set_attention_backend("_native_math")
        assert {p._attention_backend for p in processors} == {AttentionBackendName._NATIVE_MATH}
    finally:
        model.transformer.reset_attention_backend()
        _AttentionBackendRegistry.set_active_backend(before)
    assert {p._attention_backend for p in processors} == {None}
