"""The toy plugin runs the core's conformance kit against itself, as any plugin should."""

from __future__ import annotations

import pytest

from arc_fabric_core.dispatch.plugins import Plugins
from arc_fabric_core.testing import PluginConformance


class TestToyConformance(PluginConformance):
    model = "toy"
    variant = "default"
    params = {"num_frames": 4, "height": 16, "width": 16, "steps": 4, "prompt": "bands"}
    bad_params = [({"height": 12}, "height"), ({"steps": 0}, "steps"), ({"num_frames": 0}, "num_frames")]

    @pytest.fixture(scope="class")
    @classmethod  # a class-scoped fixture: a classmethod, as in the kit (pytest 10 drops instance methods)
    def plugins(cls) -> Plugins:
        # Registered by hand, so the suite runs whether or not the package is installed.
        from arc_toy import plugin

        plugins = Plugins(load_entrypoints=False)
        plugins.register(plugin, name="toy")
        return plugins


def test_steps_and_sizes_have_bounds_that_say_why() -> None:
    from arc_fabric_core.contract.errors import InputError
    from arc_fabric_core.contract.models import validate_params
    from arc_toy.plugin import ToyParams

    assert validate_params(ToyParams, {"steps": 1000}).steps == 1000
    with pytest.raises(InputError, match=r"steps: at most 1000 \(a schedule spans 1000 training timesteps"):
        validate_params(ToyParams, {"steps": 1001})
    with pytest.raises(InputError, match=r"height: at most 1024 \(the toy holds every pixel"):
        validate_params(ToyParams, {"height": 1032})
