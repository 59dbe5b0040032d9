"""DreamDojo in the web UI: a dataset sample picker on the generate page, and on a
rollout's session page its ground truth beside the prediction, the actions, the metrics,
the chunks as they are made and a "next chunk" control (``static/panel.js``), over the
routes of :mod:`.routes`."""

from __future__ import annotations

from pathlib import Path

from arc_fabric_core.contract.ui import UiExtension

STATIC = Path(__file__).parent / "static"


def extension() -> UiExtension:
    from arc_dreamdojo.ui.routes import make_router

    return UiExtension(
        name="dreamdojo",
        static=STATIC,
        module="panel.js",
        styles=("panel.css",),
        models=("dreamdojo",),
        routes=make_router,
        description="Dataset samples, ground truth beside the rollout, actions, metrics, the next chunk",
    )
