"""benchmarks/speed.py's CPU preset runs and reports every arm with numbers (one model,
one round, the fewest steps)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
ARMS = (
    "diffusers",
    "engine",
    "engine-fast-exact",
    "engine-cached-fbc",
    "engine-cached-magcache",
    "engine-cached-taylorseer",
)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
def test_cpu_preset_reports_every_arm(tmp_path: Path) -> None:
    # In a process of its own: the CPU preset sets torch's thread count, which would change
    # the summation order (and so the bits) of every later test in this one.
    args = ["--preset", "cpu", "--models", "wan-1.3b", "--quick", "--out", str(tmp_path)]
    subprocess.run([sys.executable, str(BENCH), *args], check=True, timeout=900, cwd=tmp_path)
    report = json.loads((tmp_path / "speed.json").read_text())
    assert report["machine"]["torch"] and report["machine"]["diffusers"]
    wan = report["models"]["wan-1.3b"]
    assert "error" not in wan, wan.get("traceback")
    assert wan["steps_run"] == 3 and wan["steps_of_setting"] == 50
    assert set(wan["arms"]) == set(ARMS)
    for name in ARMS:
        arm = wan["arms"][name]
        assert "error" not in arm, (name, arm["error"])
        assert _number(arm["ms_per_step"]) and arm["ms_per_step"] > 0, name
        assert _number(arm["e2e_s"]) and _number(arm["decode_s"]), name
        assert arm["peak_gib"] is None  # the CPU: the process's RSS is reported per model instead
    assert _number(wan["process_max_rss_gib"])
    for name in ARMS[3:]:
        quality = wan["arms"][name]["quality"]
        assert quality["against"] == "engine-fast-exact"
        assert quality["psnr_db"] == "inf" or _number(quality["psnr_db"])
        assert _number(quality["ssim"])
        assert quality["lpips"] is None or _number(quality["lpips"])
    ratios = wan["ratios"]
    for key in ("engine/diffusers ms_per_step", "fast-exact/diffusers ms_per_step", "cached-fbc/uncached ms_per_step"):
        assert _number(ratios[key]), key
    assert wan["targets"][0]["target"].startswith("engine-fast-exact s/step")
    assert (tmp_path / "speed.png").is_file()
