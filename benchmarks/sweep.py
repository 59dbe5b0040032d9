"""A sweep of N jobs in one process (models warm across jobs) against N separate processes.

    python benchmarks/sweep.py --jobs 6 --model wan21 --args num_frames=9 height=32 width=32 steps=4

Both arms run the same jobs (seeds 0..N-1) through the command line, each in a fresh
folder; the figure is the wall time of each arm and their ratio (what one warm process
saves: interpreter start, imports, model loads).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args: list[str], cwd: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "arc_fabric_core", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{res.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--model", default="wan21")
    ap.add_argument("--args", nargs="*", default=["num_frames=9", "height=32", "width=32", "steps=4"])
    opts = ap.parse_args()
    base = [f"+model={opts.model}", *opts.args, "progress=false"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        seeds = ",".join(str(s) for s in range(opts.jobs))
        run(["-m", *base, f"seed={seeds}", f"output_dir={root / 'sweep'}"], root)
        one_process = time.perf_counter() - t0
        t0 = time.perf_counter()
        for seed in range(opts.jobs):
            run([*base, f"seed={seed}", f"output_dir={root / f'separate-{seed}'}"], root)
        separate = time.perf_counter() - t0
        rows = (root / "sweep" / "sweep.csv").read_text().splitlines()
    print(
        json.dumps(
            {
                "jobs": opts.jobs,
                "model": opts.model,
                "args": opts.args,
                "one_process_seconds": round(one_process, 2),
                "separate_processes_seconds": round(separate, 2),
                "separate_over_one_process": round(separate / one_process, 2),
                "sweep_csv_rows": len(rows) - 1,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
