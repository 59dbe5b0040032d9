"""What a plugin adds to the server and its web UI: routes of its own and a panel.

A plugin registers a :class:`UiExtension` through ``arc_register_ui``. The server mounts
its routes under ``/api/ext/<name>/`` and its static folder under ``/ext/<name>/``, and
lists it in ``GET /api/extensions``; the web UI imports its module on the pages of the
models it is for and hands it a container element to fill (``static/extensions.js``
says what the module exports and what it gets).

The core knows nothing of any extension's content: a model's own views (a world
model's ground truth beside its prediction, a chart of its actions) live with its plugin.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import ArcFabricError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # one URL path segment, the same in every spelling
FILE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._/-]{0,199}$")  # a file inside the static folder


@dataclass(frozen=True)
class UiExtension:
    """One extension of the server and the web UI.

    ``routes(orchestrator)`` returns a FastAPI ``APIRouter`` (called once, when the app is
    made; the orchestrator gives ``.store``, ``.plugins``, ``.engine``, ``.bus``); its paths
    are mounted below ``/api/ext/<name>``, behind the server's token like the rest of the
    API, and an ``InputError`` raised in one is answered 422 ``{field, message}``.
    ``static``: a folder served at ``/ext/<name>/``; ``module``: the ES module in it the UI
    imports; ``styles``: style sheets in it the UI adds to the page. ``models``: the models
    whose pages the panel is for (empty: every model's).
    """

    name: str
    static: Path
    module: str = "panel.js"
    models: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    routes: Callable[[Any], Any] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ArcFabricError(f"UI extension name {self.name!r}: lowercase letters, digits, _ and - (a URL segment)")
        for file in (self.module, *self.styles):
            if not FILE.fullmatch(file) or ".." in file.split("/"):
                raise ArcFabricError(f"UI extension {self.name!r}: {file!r} is no file name inside its static folder")

    def describe(self) -> dict[str, Any]:
        """What ``GET /api/extensions`` lists (paths relative to the page, as the UI's own)."""
        base = f"ext/{self.name}/"
        return {
            "name": self.name,
            "description": self.description,
            "models": list(self.models),
            "module": base + self.module,
            "styles": [base + s for s in self.styles],
            "api": f"api/ext/{self.name}/",
        }


__all__ = ["UiExtension"]
