"""Nox sessions: the suite, each plugin alone in its own venv, lint, benchmarks.

nox -s tests          core + every plugin in this repo, the whole suite
nox -s wan21 ltx longlive dreamdojo toy   one venv per plugin: the core and that plugin only
nox -s lint           ruff
nox -s bench          engine vs diffusers, what sessions cost, what hybrids save, the runtime, on mid-size random Wans
nox -s speed          the speed settings against bare diffusers, every model, tiny, on the CPU (benchmarks/speed.py)
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# torch from the pinned wheel (the cap in pyproject keeps pip off multi-GB downloads).
CORE = ["-e", ".[test]"]
PLUGINS = {
    "wan21": "plugins/arc_wan21",
    "ltx": "plugins/arc_ltx",
    "longlive": "plugins/arc_longlive",
    "dreamdojo": "plugins/arc_dreamdojo",
    "toy": "examples/arc_toy",
}


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    args = [a for path in PLUGINS.values() for a in ("-e", path)]
    session.install(*CORE, *args)
    session.run("pytest", *session.posargs)


@nox.session(python="3.11", name="wan21")
def plugin_wan21(session: nox.Session) -> None:
    session.install(*CORE, PLUGINS["wan21"])  # a regular (not editable) install of the plugin
    session.run("pytest", "plugins/arc_wan21/tests", *session.posargs)


@nox.session(python="3.11", name="ltx")
def plugin_ltx(session: nox.Session) -> None:
    session.install(*CORE, PLUGINS["ltx"])
    session.run("pytest", "plugins/arc_ltx/tests", *session.posargs)


@nox.session(python="3.11", name="longlive")
def plugin_longlive(session: nox.Session) -> None:
    session.install(*CORE, PLUGINS["longlive"])
    session.run("pytest", "plugins/arc_longlive/tests", *session.posargs)


@nox.session(python="3.11", name="dreamdojo")
def plugin_dreamdojo(session: nox.Session) -> None:
    session.install(*CORE, PLUGINS["dreamdojo"])
    session.run("pytest", "plugins/arc_dreamdojo/tests", *session.posargs)


@nox.session(python="3.11", name="toy")
def plugin_toy(session: nox.Session) -> None:
    session.install(*CORE, PLUGINS["toy"])
    session.run("pytest", "examples/arc_toy/tests", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install(*CORE, "-e", PLUGINS["wan21"])
    session.run("python", "benchmarks/engine_vs_diffusers.py", *session.posargs)
    session.run("python", "benchmarks/sessions.py")
    session.run("python", "benchmarks/hybrid.py")
    session.run("python", "benchmarks/runtime.py")


@nox.session(python="3.11")
def speed(session: nox.Session) -> None:
    editable = [arg for name in ("wan21", "ltx", "longlive", "dreamdojo") for arg in ("-e", PLUGINS[name])]
    session.install(*CORE, *editable, "matplotlib")
    session.run("python", "benchmarks/speed.py", "--preset", "cpu", *session.posargs)
