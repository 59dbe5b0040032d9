"""Puts every installed Arc Fabric plugin's configs on Hydra's search path.

Hydra imports the ``hydra_plugins`` namespace package and finds this class; each
plugin names its config package through the ``arc_config_searchpath`` hook, so that
``+model=<name>`` works for any installed plugin without touching the core.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class ArcFabricSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from arc_fabric_core.dispatch.plugins import get_plugins

        for path in get_plugins().config_searchpath():
            search_path.append(provider="arc-fabric", path=path)
