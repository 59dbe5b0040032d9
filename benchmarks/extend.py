"""Extending a LongLive session a block at a time: the cost of each extension, with the
session live (one engine: the extension continues the parent's KV cache and streaming
decoder) and rebuilt (a new engine per extension, the model warm in a shared cache: the
plugin replays every earlier block from the latents, as another process would).

    python benchmarks/extend.py                  # tiny LongLive, 1 block then 9 extensions, CPU
    python benchmarks/extend.py --extensions 5 --runs 3

The tiny transformer's rotary table holds 10 blocks, hence 9 extensions of a 1-block
session. Both arms run interleaved in one process on the same warm model; each
extension's run (engine.run, streaming decode included) is timed, its video is not
written. Prints JSON: seconds per extension (median over runs) and last / first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from arc_fabric_core.engine.facade import Engine
from arc_fabric_core.runtime.model_cache import ModelCache
from arc_fabric_core.store.files import SessionStore

PARAMS = {"prompt": "a fox in the snow", "num_frames": 9, "height": 64, "width": 64, "seed": 3}


def chain(store: SessionStore, cache: ModelCache, extensions: int, live: bool) -> tuple[list[float], torch.Tensor]:
    """A 1-block session extended ``extensions`` times by one block: seconds per extension."""
    engine = Engine(store, device="cpu", cache=cache)
    session = engine.create("longlive", PARAMS, variant="tiny")
    engine.run(session)
    seconds = []
    for _ in range(extensions):
        if not live:
            engine = Engine(store, device="cpu", cache=cache)  # nothing of the parent stays live
        session = engine.extend(session.id, blocks=1)
        t0 = time.perf_counter()
        engine.run(session)
        seconds.append(time.perf_counter() - t0)
    return seconds, engine.final_latents(session)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--extensions", type=int, default=9)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runs: dict[str, list[list[float]]] = {"live": [], "rebuilt": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = SessionStore(Path(tmp))
        cache = ModelCache(Engine(store, device="cpu").plugins)
        chain(store, cache, 1, live=True)  # warm-up: the model loads, the first calls compile kernels
        for _ in range(args.runs):
            for arm in ("live", "rebuilt"):  # interleaved, so drift hits both arms alike
                seconds, latents = chain(store, cache, args.extensions, live=arm == "live")
                runs[arm].append(seconds)
                if arm == "live":
                    expected = latents
                elif not torch.equal(latents, expected):
                    raise SystemExit("the rebuilt chain's latents differ from the live one's")
    report: dict[str, Any] = {"extensions": args.extensions, "runs": args.runs, "threads": torch.get_num_threads()}
    for arm, per_run in runs.items():
        median = [statistics.median(r[i] for r in per_run) for i in range(args.extensions)]
        report[arm] = {
            "seconds": [round(s, 4) for s in median],
            "last_over_first": round(median[-1] / median[0], 3),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
