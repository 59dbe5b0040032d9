"""A plugin's UI extension (``arc_register_ui``): its routes under /api/ext/<name>/, its
static folder at /ext/<name>/, listed by /api/extensions; behind the token like the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from arc_fabric_core.contract.errors import ArcFabricError, InputError
from arc_fabric_core.contract.hookspecs import hookimpl
from arc_fabric_core.contract.ui import UiExtension
from arc_fabric_core.server.app import create_app
from arc_fabric_core.server.orchestrator import Settings


class Panel:
    def __init__(self, static: Path, name: str = "demo") -> None:
        self.static, self.name = static, name

    def routes(self, orch: Any) -> APIRouter:
        router = APIRouter()

        @router.get("/hello")
        def hello(n: int = 1) -> dict[str, Any]:
            if n < 0:
                raise InputError("n", "must be 0 or more")
            return {"hello": n, "sessions": str(orch.store.root)}

        return router

    @hookimpl
    def arc_register_ui(self, register: Any) -> None:
        register(UiExtension(self.name, self.static, styles=("panel.css",), models=("toy",), routes=self.routes))


@pytest.fixture
def static(tmp_path: Path) -> Path:
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "panel.js").write_text("export function mountSession(ctx) {}\n")
    (folder / "panel.css").write_text(".x {}\n")
    return folder


def test_routes_static_files_and_the_listing(tmp_path: Path, toy_plugins, static: Path) -> None:
    toy_plugins.register(Panel(static), name="demo-ui")
    app = create_app(Settings(data_dir=tmp_path / "server", device="cpu"), plugins=toy_plugins, start_worker=False)
    with TestClient(app) as client:
        listed = client.get("/api/extensions").json()
        assert listed == [
            {
                "name": "demo",
                "description": "",
                "models": ["toy"],
                "module": "ext/demo/panel.js",
                "styles": ["ext/demo/panel.css"],
                "api": "api/ext/demo/",
            }
        ]
        assert client.get("/ext/demo/panel.js").text.startswith("export function mountSession")
        assert client.get("/api/ext/demo/hello?n=2").json()["hello"] == 2
        bad = client.get("/api/ext/demo/hello?n=-1")
        assert bad.status_code == 422 and bad.json() == {"field": "n", "message": "must be 0 or more"}
        assert client.get("/api/ext/demo/hello?n=x").json()["field"] == "n"


def test_behind_the_token_the_routes_need_it_the_module_does_not(tmp_path: Path, toy_plugins, static: Path) -> None:
    toy_plugins.register(Panel(static), name="demo-ui")
    settings = Settings(data_dir=tmp_path / "server", device="cpu")
    with TestClient(create_app(settings, plugins=toy_plugins, token="s3cret", start_worker=False)) as client:
        assert client.get("/ext/demo/panel.js").status_code == 200  # a module import sends no header
        assert client.get("/api/ext/demo/hello").status_code == 401
        ok = client.get("/api/ext/demo/hello", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_a_name_twice_or_a_bad_one_is_refused(toy_plugins, static: Path) -> None:
    with pytest.raises(ArcFabricError, match="lowercase"):
        UiExtension("Bad Name", static)
    with pytest.raises(ArcFabricError, match="no file name"):
        UiExtension("ok", static, module="../escape.js")
    toy_plugins.register(Panel(static), name="one")
    toy_plugins.register(Panel(static), name="two")
    with pytest.raises(ArcFabricError, match="registered by both"):
        toy_plugins.ui_extensions()
