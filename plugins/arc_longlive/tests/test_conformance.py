"""arc_longlive against the core's conformance kit."""

from __future__ import annotations

from arc_fabric_core.testing import PluginConformance


class TestLongLiveConformance(PluginConformance):
    model = "longlive"
    variant = "tiny"
    params = {"num_frames": 21, "height": 32, "width": 32, "prompt": "a red fox"}
    autoregressive = True
    bad_params = [
        ({"num_frames": 17}, "num_frames"),
        ({"height": 40}, "height"),
        ({"steps": 5}, "steps"),
        ({"guidance": 3.0}, "guidance"),
        ({"shift": 0}, "shift"),
        ({"switch_frames": [3]}, "switch_frames"),
    ]
