"""Helpers for model plugins built on diffusers: loading a pipeline folder, the VAE's
latent statistics and frames, guidance, memory estimates, the tiny Wan and tokenizer
of tiny checkpoints, KV caches. Each plugin keeps only what is its model's own."""
