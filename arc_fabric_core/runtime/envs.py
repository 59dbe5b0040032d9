"""One virtual environment per plugin (the `env` subcommand: arc_fabric_core/cli/envs.py).

    env create NAME [--from SRC] [--no-base] [--core SRC] [--no-editable]
                        create NAME's env, or update it when it exists
    env list            the plugin envs, as JSON
    env path NAME       the env's python (to run a worker or a command in it)
    env remove NAME     delete the env (_base only when no env layers on it)

Every command takes --root DIR; the default is $ARC_FABRIC_ENVS, else
$ARC_FABRIC_CACHE/envs, else ~/.cache/arc_fabric/envs.

Plugins pin different libraries, so each can get its own venv. torch is the same for
all of them and weighs gigabytes, so it is installed once, into a shared base venv
(ROOT/_base); a plugin env sees the base's site-packages through a .pth file and pip
treats what the base holds as installed. A plugin env holds only what the base lacks
(the core's and the plugin's own dependencies); a library it pins differently is
installed into the plugin env and shadows the base's copy.

NAME is wan21, ltx or toy (their folders in this checkout), or any name with --from: a
folder or a pip requirement.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import EnvError, InputError

BASE_NAME = "_base"
BASE_REQUIREMENTS: tuple[str, ...] = ("torch==2.14.1", "numpy")
# The plugins this checkout carries, by short name (relative to the checkout's root).
KNOWN_SOURCES = {
    "wan21": "plugins/arc_wan21",
    "ltx": "plugins/arc_ltx",
    "longlive": "plugins/arc_longlive",
    "toy": "examples/arc_toy",
    "dreamdojo": "plugins/arc_dreamdojo",
}
RECORD = "arc_fabric_env.json"  # what was installed, written once an install succeeded
LAYER_PTH = "_arc_fabric_base.pth"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Variables that would make the envs' interpreters or pip look somewhere else.
_DROPPED_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT")
_TAIL_LINES = 15


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def envs_root(environ: Mapping[str, str] | None = None) -> Path:
    """Where the envs live: ``$ARC_FABRIC_ENVS``, else ``envs`` under the Arc Fabric
    cache (``$ARC_FABRIC_CACHE``, else ~/.cache/arc_fabric), beside the tiny checkpoints."""
    environ = os.environ if environ is None else environ
    if environ.get("ARC_FABRIC_ENVS"):
        return Path(environ["ARC_FABRIC_ENVS"]).expanduser()
    cache = environ.get("ARC_FABRIC_CACHE") or str(Path.home() / ".cache" / "arc_fabric")
    return Path(cache).expanduser() / "envs"


@dataclass(frozen=True)
class PluginEnv:
    """A created env: ``name`` (a plugin's short name, or ``_base``), its venv folder,
    and the base venv it layers on (None for the base, or an env made with base=False)."""

    name: str
    path: Path
    base: Path | None

    @property
    def python(self) -> Path:
        """The interpreter to run the plugin with; no activation is needed."""
        return _python_in(self.path)

    def record(self) -> dict[str, Any]:
        """What was installed and when (name, source, core, base, created, updated)."""
        return _read_record(self.path) or {}


def _python_in(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _read_record(venv: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((venv / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _check_name(name: str, allow_base: bool = False) -> None:
    """Names become folder names under the root: refuse anything that could escape it."""
    if allow_base and name == BASE_NAME:
        return
    if not _NAME.fullmatch(name or ""):
        raise InputError(
            "name",
            f"{name!r} is not a plugin name; use letters, digits, _ and - (starting with a letter or digit)",
        )


def resolve_root(root: Path | None) -> Path:
    """The envs folder: ``root`` when given, else the default (:func:`envs_root`)."""
    return Path(root).expanduser().resolve() if root is not None else envs_root().resolve()


def find_env(name: str, root: Path | None = None) -> PluginEnv | None:
    """NAME's env under ``root``, or None when it was never created or its first
    creation did not finish (an env without its record may lack packages)."""
    _check_name(name, allow_base=True)
    path = resolve_root(root) / name
    record = _read_record(path)
    if record is None or not _python_in(path).is_file():
        return None
    base = record.get("base")
    return PluginEnv(name=name, path=path, base=Path(base) if base else None)


def list_envs(root: Path | None = None, include_base: bool = False) -> list[PluginEnv]:
    """Every created plugin env under ``root``, by name; the base only when asked for."""
    folder = resolve_root(root)
    if not folder.is_dir():
        return []
    envs = []
    for child in sorted(folder.iterdir()):
        is_base = child.name == BASE_NAME
        if not child.is_dir() or (is_base and not include_base) or (not is_base and not _NAME.fullmatch(child.name)):
            continue
        env = find_env(child.name, folder)
        if env is not None:
            envs.append(env)
    return envs


def checkout_root() -> Path | None:
    """The source checkout the running core comes from (an editable install), if any:
    the known plugins' folders are found there, and the core is installed from it."""
    import arc_fabric_core

    root = Path(arc_fabric_core.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "arc_fabric_core").is_dir() else None


def _subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_VARS}
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def _run(cmd: Sequence[str | Path], what: str, field: str) -> str:
    """Run ``cmd`` quietly; on failure an EnvError carrying the tail of its output."""
    try:
        proc = subprocess.run(
            [str(c) for c in cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_subprocess_env(),
            check=False,
        )
    except OSError as exc:
        raise EnvError(field, f"{what} could not start: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        # Warnings (an index folder that is absent, say) are rarely the cause: show the rest first.
        tail = [line for line in lines if not line.lstrip().startswith("WARNING:")] or lines
        detail = "\n".join(f"  {line}" for line in tail[-_TAIL_LINES:])
        raise EnvError(field, f"{what} failed (exit {proc.returncode}):\n{detail}")
    return proc.stdout


def _site_info(python: Path) -> tuple[str, Path]:
    """(X.Y, site-packages) of a venv's interpreter, as that interpreter sees them."""
    out = _run(
        [
            python,
            "-c",
            "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_path('purelib'))",
        ],
        f"{python}",
        "env",
    )
    version, purelib = out.strip().splitlines()[-2:]
    return version, Path(purelib)


def _prepare_venv(path: Path, label: str, progress: Callable[[str], None]) -> None:
    """Reuse a finished venv; make one (with pip, from the interpreter running this, its
    base one when in a venv) otherwise. A venv whose creation was cut short is made
    again, as pip may be missing from it; a folder that is no venv is left alone."""
    if _python_in(path).is_file() and _read_record(path) is not None:
        progress(f"updating {label} env at {path}")
        return
    if path.exists():
        if not (path / "pyvenv.cfg").is_file() and any(path.iterdir()):
            raise EnvError("env", f"{path} exists and is not a venv; move it away or use another --root")
        shutil.rmtree(path)
    progress(f"creating {label} env at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", path], f"creating the venv {path}", "env")


def _write_record(path: Path, values: dict[str, Any]) -> None:
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    old = _read_record(path) or {}
    record = {**values, "created": old.get("created", now), "updated": now}
    tmp = path / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path / RECORD)


def _pip_install(python: Path, args: Sequence[str], what: str) -> None:
    _run([python, "-m", "pip", "install", "-q", *args], what, "pip")


def ensure_base(
    root: Path | None = None,
    requirements: Sequence[str] = BASE_REQUIREMENTS,
    progress: Callable[[str], None] = _stderr,
) -> PluginEnv:
    """Create the shared base venv (``ROOT/_base``) holding torch, or bring it up to
    ``requirements``. Idempotent: when they are met, pip only checks (a few seconds)."""
    path = resolve_root(root) / BASE_NAME
    python = _python_in(path)
    _prepare_venv(path, "base", progress)
    version, _ = _site_info(python)
    _check_python(version, path)
    progress(f"installing {' '.join(requirements)} into base")
    _pip_install(python, list(requirements), f"installing {' '.join(requirements)} into {path}")
    _write_record(
        path,
        {
            "name": BASE_NAME,
            "source": None,
            "core": None,
            "base": None,
            "python": version,
            "requirements": list(requirements),
        },
    )
    return PluginEnv(name=BASE_NAME, path=path, base=None)


def _check_python(version: str, path: Path) -> None:
    """Layering needs one Python version everywhere: compiled wheels are per version."""
    here = "{}.{}".format(*sys.version_info[:2])
    if version != here:
        raise EnvError(
            "env",
            f"{path} runs Python {version}, this is {here}; remove it "
            f"(python -m arc_fabric_core env remove {path.name}) and create it again",
        )


def _resolve(spec: str, editable: bool) -> tuple[list[str], str]:
    """pip arguments for a folder (``-e`` when editable) or a requirement, and what to record."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        return (["-e", str(folder)] if editable else [str(folder)]), str(folder)
    return [spec], spec


def create_env(
    name: str,
    source: str | None = None,
    root: Path | None = None,
    base: bool = True,
    core: str | None = None,
    editable: bool = True,
    progress: Callable[[str], None] = _stderr,
) -> PluginEnv:
    """Create NAME's env, or update it when it exists (pip runs again; quick when nothing
    changed), with the core and the plugin installed.

    ``source``: a folder or a pip requirement (default: NAME's folder in this checkout).
    ``core``: the same (default: this checkout, when the running core comes from one;
    otherwise the plugin's own dependency on arc-fabric-core brings it).
    ``base``: layer on the shared base venv for torch; False installs torch into the env.
    """
    _check_name(name)
    checkout = checkout_root()
    if source is None:
        if name not in KNOWN_SOURCES:
            raise InputError(
                "name",
                f"unknown plugin {name!r}; allowed: {', '.join(KNOWN_SOURCES)}, or give --from <folder or requirement>",
            )
        if checkout is None or not (checkout / KNOWN_SOURCES[name]).is_dir():
            raise InputError(
                "name", f"{name!r} lives in the Arc Fabric checkout, and this core is not from one; give --from"
            )
        source = str(checkout / KNOWN_SOURCES[name])
    if core is None and checkout is not None:
        core = str(checkout)
    plugin_args, plugin_recorded = _resolve(source, editable)
    core_args, core_recorded = _resolve(core, editable) if core is not None else ([], None)

    folder = resolve_root(root)
    base_env = find_env(BASE_NAME, folder) if base else None
    if base and (base_env is None or base_env.record().get("requirements") != list(BASE_REQUIREMENTS)):
        base_env = ensure_base(folder, progress=progress)  # a finished base is not checked again (seconds)
    path = folder / name
    python = _python_in(path)
    _prepare_venv(path, name, progress)
    version, site_packages = _site_info(python)
    _check_python(version, path)
    layer = site_packages / LAYER_PTH
    if base_env is not None:
        _, base_site = _site_info(base_env.python)
        # addsitedir (rather than a bare path line) also runs the base's own .pth files.
        layer.write_text(
            "# Arc Fabric: torch and the rest of the shared base env (arc_fabric_core/runtime/envs.py)\n"
            f"import site; site.addsitedir({str(base_site)!r})\n"
        )
    else:
        layer.unlink(missing_ok=True)
    torch = [] if base_env is not None else list(BASE_REQUIREMENTS)
    what = f"{'core + ' if core_args else ''}{name}"
    progress(f"installing {what} into {path}")
    # --upgrade: an update moves requirement sources to their newest match; dependencies
    # are only upgraded when needed, so torch stays the base's.
    _pip_install(python, ["--upgrade", *torch, *core_args, *plugin_args], f"installing {what} into {path}")
    _write_record(
        path,
        {
            "name": name,
            "source": plugin_recorded,
            "core": core_recorded,
            "editable": editable,
            "base": str(base_env.path) if base_env is not None else None,
            "python": version,
        },
    )
    return PluginEnv(name=name, path=path, base=base_env.path if base_env is not None else None)


def remove_env(name: str, root: Path | None = None) -> Path:
    """Delete NAME's env folder (also a half-created one); the base only while no env
    layers on it, since they would lose torch."""
    _check_name(name, allow_base=True)
    folder = resolve_root(root)
    path = folder / name
    if not path.is_dir():
        raise InputError("name", f"no env {name!r} under {folder}")
    if name == BASE_NAME:
        users = [e.name for e in list_envs(folder) if e.base == path]
        if users:
            raise InputError("name", f"the base is used by {', '.join(users)}; remove those first")
    shutil.rmtree(path)
    return path
