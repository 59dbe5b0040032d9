"""What the runtime saves: warm models against cold loads, workers against in-process
runs, and the model cache on a request trace over more models than the box holds.

1. Cold vs warm. A random-weight Wan is saved in the published folder layout; each arm
   generates the same video:
     cold            a fresh model cache: load from disk + encode + denoise
     warm            the model already in the cache: encode + denoise
     worker-warm     the same job through a worker process (subprocess executor) whose
                     cache is warm: what the local protocol and the store hand-over add
   Arms run interleaved, round by round.

2. Trace. Three models on a fake box of two GPUs that hold one model each (two of the
   three fit at once); requests drawn with probabilities 0.5/0.3/0.2 (seeded), and a
   round-robin trace (LRU's worst case). For the LRU cache alone and with a CPU tier:
   hit rate (the model was warm on a GPU), loads from disk, evictions, restores from RAM.

    python benchmarks/runtime.py                    # mid-size Wan on the CPU
    python benchmarks/runtime.py --preset wan-1.3b  # the published 1.3B transformer, bf16, CUDA
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from timing import interleaved
from wan_random import CPU_MID, WAN_1_3B, build_components

PRESETS: dict[str, dict[str, Any]] = {
    "cpu-mid": dict(
        transformer=CPU_MID, text_dim=64, params=dict(num_frames=17, height=128, width=128), device="cpu",
        dtype=torch.float32, engine_dtype="float32",
    ),
    "wan-1.3b": dict(
        transformer=WAN_1_3B, text_dim=4096, params=dict(num_frames=17, height=480, width=832), device="cuda",
        dtype=torch.bfloat16, engine_dtype="auto",
    ),
}  # fmt: skip


def cold_vs_warm(preset: dict[str, Any], runs: int, steps: int, workers: bool) -> None:
    from arc_fabric_core.engine.facade import Engine
    from arc_fabric_core.jobs.executors import SubprocessExecutor
    from arc_fabric_core.jobs.queue import JobQueue, JobRunner
    from arc_fabric_core.runtime.model_cache import ModelCache
    from arc_fabric_core.runtime.weights_size import folder_bytes
    from arc_fabric_core.store.files import SessionStore
    from arc_wan21.plugin import plugins_with_wan

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "wan"
        start = time.perf_counter()
        build_components(preset).pipe.save_pretrained(folder)
        size = sum(folder_bytes(folder).values())
        print(f"saved a random Wan ({size / 2**30:.2f} GiB) in {time.perf_counter() - start:.1f}s")
        store = SessionStore(Path(tmp) / "store")
        device, dtype = preset["device"], preset["engine_dtype"]
        plugins = plugins_with_wan()
        warm_engine = Engine(store, plugins=plugins, device=device, dtype=dtype, checkpoint_every=0)
        ref = warm_engine.resolve("wan21", "1.3b", str(folder))
        params = dict(prompt="a lighthouse in a storm", negative_prompt="blurry", steps=steps, guidance=5.0)
        params.update(preset["params"])

        def cold() -> None:
            engine = Engine(store, plugins=plugins, device=device, dtype=dtype, checkpoint_every=0,
                            cache=ModelCache(plugins))  # fmt: skip
            engine.run(engine.create(ref, params))
            engine.cache.evict(ref, dtype)

        def warm() -> None:
            warm_engine.run(warm_engine.create(ref, params))

        arms = {"cold": cold, "warm": warm}
        executor = None
        if workers:
            queue = JobQueue(Path(tmp) / "jobs.sqlite")
            executor = SubprocessExecutor(
                store.root, device=device, dtype=dtype, worker_args=["--plugin", "arc_wan21.plugin"]
            )
            runner = JobRunner(queue, executor=executor)
            payload = {"model": "wan21", "variant": "1.3b", "weights": str(folder), "params": params}

            def worker_warm() -> None:
                queue.submit("generate", payload)
                job = runner.run_next()
                assert job is not None and job.state == "succeeded", job and job.error

            start = time.perf_counter()
            worker_warm()  # starts the worker and loads the model there
            print(f"first worker job (process start + imports + load + run): {time.perf_counter() - start:.1f}s")
            arms["worker-warm"] = worker_warm
        warm()  # warm-up
        try:
            times = interleaved(arms, runs, torch.device(device))
        finally:
            if executor is not None:
                executor.close()
        med = {k: statistics.median(v) for k, v in times.items()}
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        p = preset["params"]
        print(
            f"cold vs warm on {name}: {p['num_frames']} frames {p['width']}x{p['height']}, {steps} steps, {runs} rounds"
        )
        for arm, t in med.items():
            print(f"  {arm:<12} {t:7.2f}s  ({t / med['warm']:.2f}x warm)")
        print(f"  the load costs {med['cold'] - med['warm']:.2f}s per cold generation")


def trace(requests: int, seed: int) -> None:
    from arc_fabric_core.dispatch.plugins import Plugins
    from arc_fabric_core.runtime.devices import FakeProvider
    from arc_fabric_core.runtime.model_cache import ModelCache, ModelState
    from arc_fabric_core.testing.sized import MIB, SizedModels

    names = ["a", "b", "c"]
    rng = random.Random(seed)
    traces = {
        "skewed 0.5/0.3/0.2": rng.choices(names, weights=[0.5, 0.3, 0.2], k=requests),
        "round-robin": [names[i % 3] for i in range(requests)],
    }
    print(f"trace: 3 models of 64 MiB on a fake box of 2 GPUs x 96 MiB (2 fit at once), {requests} requests")
    print(f"  {'trace':<20}{'cache':<12}{'hit rate':>9}{'loads':>7}{'evictions':>10}{'restores':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        plugin = SizedModels(Path(tmp), {n: 64 * MIB for n in names})
        plugins = Plugins(load_entrypoints=False)
        plugins.register(plugin, name="sized")
        refs = {n: plugins.model(n).resolve("default", plugin.folder(n)) for n in names}
        for label, requests_of in traces.items():
            for tier, tier_bytes in (("lru", 0), ("lru+cpu", 256 * MIB)):
                cache = ModelCache(plugins, provider=FakeProvider(count=2, memory=96 * MIB), cpu_tier_bytes=tier_bytes)
                hits = 0
                for name in requests_of:
                    status = cache.state(refs[name])
                    hits += status is not None and status.state is ModelState.WARM
                    cache.get(refs[name])
                kinds = Counter(kind for kind, _ in cache.events)
                evictions = kinds["evict"] + kinds["offload"]
                print(
                    f"  {label:<20}{tier:<12}{hits / len(requests_of):>9.3f}{kinds['load']:>7}"
                    f"{evictions:>10}{kinds['restore']:>9}"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu-mid")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-workers", action="store_true", help="skip the worker-process arm")
    ap.add_argument("--only", choices=["cold-warm", "trace"], default=None)
    args = ap.parse_args()
    if args.only != "trace":
        cold_vs_warm(PRESETS[args.preset], args.runs, args.steps, workers=not args.no_workers)
    if args.only != "cold-warm":
        trace(args.requests, args.seed)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
