"""A tiny T5-style tokenizer built offline, for tiny checkpoints of UMT5/T5-conditioned models.

The published tokenizers come from model hubs; a tiny checkpoint needs one that can be
built here: a Unigram model over letters, digits and punctuation, in T5's fast-tokenizer
shape (``</s>`` appended, ``<pad>`` id 0). It survives ``save_pretrained`` /
``from_pretrained`` bit for bit.

Run-time code: a first run of a tiny variant builds its checkpoint with it, so it lives in
the core proper, never in :mod:`arc_fabric_core.testing` (which needs pytest).
"""

from __future__ import annotations

from typing import Any


def t5_tokenizer(model_max_length: int | None = None) -> Any:
    """The tokenizer; ``model_max_length`` is saved with it where a pipeline reads the
    longest prompt from its tokenizer (LTX's: 128)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing
    from transformers import T5TokenizerFast

    pieces = ["<pad>", "</s>", "<unk>", "▁"]
    pieces += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces += [str(d) for d in range(10)] + list(".,;:!?'-\"()")
    vocab = [(p, 0.0 if i < 3 else -float(i) / 10) for i, p in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    extra = {} if model_max_length is None else {"model_max_length": model_max_length}
    return T5TokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0, **extra
    )
