"""The summary of a Hydra sweep (``python -m arc_fabric_core -m ...``).

Every job of a multirun writes ``job.json`` in its folder (the swept values, its time,
its session, its metrics); after each job the sweep's folder gets ``sweep.csv`` (one
row per job), ``sweep_summary.json`` (the mean of each metric over the jobs: an
evaluation's result) and ``sweep.png`` (each metric, and the time per job, against the first
swept parameter, one line per combination of the others), rebuilt from every
``job.json`` there — so the last job to finish leaves the whole summary, with any
launcher. Files are replaced atomically. When the multirun ends, :class:`SweepSummary`
(a Hydra callback in the primary config) writes them once more, so that jobs finishing
at the same moment in parallel processes (the joblib launcher) are all in.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from arc_fabric_core.metrics.report import json_safe


def write_job(folder: Path, overrides: list[str], seconds: float, session: str, report: dict[str, Any] | None) -> Path:
    swept = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and not key.startswith(("hydra.", "+model", "output_dir")):
            swept[key.lstrip("+~")] = value
    record = {"job": folder.name, "swept": swept, "seconds": round(seconds, 3), "session": session}
    if report is not None:
        record["metrics"] = {k: v["value"] for k, v in report["metrics"].items()}
        record["random_backbone"] = report["random_backbone"]
        record["gate_passed"] = report["gate"]["passed"]
    path = folder / "job.json"
    _atomic(path, json.dumps(json_safe(record), indent=2) + "\n")
    return path


def summarize(sweep: Path) -> tuple[Path, Path | None]:
    """``sweep.csv`` (and ``sweep.png`` when matplotlib is there) from the jobs' ``job.json``."""
    jobs = sorted(
        (json.loads(p.read_text()) for p in sweep.glob("*/job.json")), key=lambda j: (len(j["job"]), j["job"])
    )
    # The parameters that vary across the jobs, in the order the command gave them.
    seen: dict[str, None] = {}
    for j in jobs:
        seen.update(dict.fromkeys(j["swept"]))
    keys = [k for k in seen if len({j["swept"].get(k) for j in jobs}) > 1]
    metrics = sorted({m for j in jobs for m in j.get("metrics", {})})
    columns = ["job", *keys, *metrics, "seconds", "gate_passed", "session"]
    rows = [
        {
            "job": j["job"],
            **{k: j["swept"].get(k, "") for k in keys},
            **{m: j.get("metrics", {}).get(m, "") for m in metrics},
            "seconds": j["seconds"],
            "gate_passed": j.get("gate_passed", ""),
            "session": j["session"],
        }
        for j in jobs
    ]
    random = {m for j in jobs for m in j.get("random_backbone", [])}
    fd, tmp = tempfile.mkstemp(dir=sweep, prefix=".sweep-", suffix=".csv")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    csv_path = sweep / "sweep.csv"
    os.replace(tmp, csv_path)
    _atomic(sweep / "sweep_summary.json", json.dumps(json_safe(means(rows, [*metrics, "seconds"])), indent=2) + "\n")
    return csv_path, _plot(sweep, rows, keys, metrics, random)


def means(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, Any]:
    """The mean of each column over the jobs that have a number there (an evaluation's
    summary: the mean PSNR, SSIM and LPIPS over its samples), and how many had one."""
    out: dict[str, Any] = {"jobs": len(rows), "mean": {}, "count": {}}
    for column in columns:
        values = [v for v in (_num(r.get(column)) for r in rows) if v is not None and math.isfinite(v)]
        out["mean"][column] = sum(values) / len(values) if values else None
        out["count"][column] = len(values)
    return out


def _plot(
    sweep: Path, rows: list[dict[str, Any]], keys: list[str], metrics: list[str], random: set[str]
) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = [*metrics, "seconds"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    x_key = keys[0] if keys else "job"
    others = keys[1:]
    xs = sorted({str(r[x_key]) for r in rows}, key=_sort_key)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(", ".join(f"{k}={r[k]}" for k in others) or "all", []).append(r)
    for ax, name in zip(axes[0], panels, strict=True):
        for label, members in groups.items():
            points = sorted(((xs.index(str(m[x_key])), _num(m[name])) for m in members), key=lambda p: p[0])
            points = [p for p in points if p[1] is not None]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(x_key)
        title = "time per job (s)" if name == "seconds" else name
        ax.set_title(title + (" - RANDOM backbone" if name in random else ""))
        ax.grid(alpha=0.3)
    if len(groups) > 1:
        axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=sweep, prefix=".sweep-", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    png = sweep / "sweep.png"
    os.replace(tmp, png)
    return png


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _sort_key(value: str) -> tuple[int, float, str]:
    number = _num(value)
    return (0, number, "") if number is not None and math.isfinite(number) else (1, 0.0, value)


def _atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # hydra is a core dependency; this only keeps the module importable alone
    Callback = object  # type: ignore[misc,assignment]


class SweepSummary(Callback):  # type: ignore[misc]
    """Hydra callback: the sweep's summary, from every job, once the multirun ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        root = Path(config.output_dir) if config.get("output_dir") else Path(config.hydra.sweep.dir)
        if any(root.glob("*/job.json")):
            summarize(root)
