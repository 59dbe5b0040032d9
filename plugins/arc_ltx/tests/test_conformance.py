"""arc_ltx against the core's conformance kit (single pass, the tiny variant)."""

from __future__ import annotations

from arc_fabric_core.testing import PluginConformance


class TestLTXConformance(PluginConformance):
    model = "ltx"
    variant = "tiny"
    params = {
        "num_frames": 9,
        "height": 64,
        "width": 96,
        "timesteps": [1000, 981, 909, 725],
        "prompt": "a red fox",
        "negative_prompt": "blur",
    }
    bad_params = [
        ({"num_frames": 10}, "num_frames"),
        ({"height": 40}, "height"),
        ({"width": 50}, "width"),
        ({"steps": 3}, "steps"),  # disagrees with the 4 timesteps
        ({"timesteps": [900, 950]}, "timesteps"),
        ({"timesteps": [1200, 900]}, "timesteps"),
        ({"guidance": -0.5}, "guidance"),
        ({"multiscale": True, "downscale_factor": 0.2}, "downscale_factor"),
        ({"timestep_schedule": "karras"}, "timestep_schedule"),
    ]
