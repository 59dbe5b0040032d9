"""The conformance kit: a shared test suite every model plugin runs against itself.

from arc_fabric_core.testing import PluginConformance

class TestMyModel(PluginConformance):
    model = "mymodel"
    params = {"num_frames": 9, "height": 32, "width": 32, "steps": 4}
    bad_params = [({"num_frames": 10}, "num_frames")]
"""

from arc_fabric_core.testing.conformance import PluginConformance

__all__ = ["PluginConformance"]
