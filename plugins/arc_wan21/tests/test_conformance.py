"""arc_wan21 against the core's conformance kit."""

from __future__ import annotations

from arc_fabric_core.testing import PluginConformance


class TestWan21Conformance(PluginConformance):
    model = "wan21"
    variant = "tiny"
    params = {"num_frames": 9, "height": 32, "width": 32, "steps": 4, "prompt": "a red fox", "negative_prompt": "blur"}
    bad_params = [
        ({"num_frames": 10}, "num_frames"),
        ({"height": 40}, "height"),
        ({"width": 50}, "width"),
        ({"steps": 0}, "steps"),
        ({"guidance": -0.5}, "guidance"),
        ({"shift": 0}, "shift"),
    ]
