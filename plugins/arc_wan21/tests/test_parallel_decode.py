"""Decodes of one session at once (the server's decode route runs in a thread pool)."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.store.files import SessionStore


def test_parallel_decodes_each_give_the_whole_video(tmp_path: Path, small: dict) -> None:
    # Wan's VAE keeps its causal feature cache on the module: two decodes at once used to
    # interleave it and give 12 frames for a 9-frame video.
    engine = Engine(SessionStore(tmp_path), device="cpu")
    session = engine.create("wan21", small)
    engine.run(session)
    alone = engine.decode(session)
    with cf.ThreadPoolExecutor(4) as pool:
        videos = list(pool.map(lambda _: engine.decode(engine.open(session.id)), range(4)))
    for video in videos:
        assert video.shape == alone.shape == (9, 32, 32, 3)
        assert torch.equal(video, alone)
