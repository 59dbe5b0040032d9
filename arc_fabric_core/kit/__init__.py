"""Helpers for model plugins built on diffusers: loading, tiny tokenizers, KV caches."""
