"""`python -m arc_fabric_core env ...`: one virtual environment per plugin.

    env create NAME [--from SRC] [--no-base] [--core SRC] [--no-editable]
                        create NAME's env, or update it when it exists
    env list            the plugin envs, as JSON
    env path NAME       the env's python (to run a worker or a command in it)
    env remove NAME     delete the env (_base only when no env layers on it)

Every command takes --root DIR; the default is $ARC_FABRIC_ENVS, else
$ARC_FABRIC_CACHE/envs, else ~/.cache/arc_fabric/envs. How the envs are made:
arc_fabric_core/runtime/envs.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arc_fabric_core.cli.common import run_subcommand
from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.runtime.envs import KNOWN_SOURCES, create_env, find_env, list_envs, remove_env, resolve_root


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        type=Path,
        default=None,
        help="where the envs live (default: $ARC_FABRIC_ENVS or ~/.cache/arc_fabric/envs)",
    )
    ap = argparse.ArgumentParser(
        prog="python -m arc_fabric_core env", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("create", parents=[common], help="create a plugin's env, or update it")
    p.add_argument("name", help=f"{', '.join(KNOWN_SOURCES)}, or any name with --from")
    p.add_argument("--from", dest="source", default=None, metavar="SRC", help="a folder or a pip requirement")
    p.add_argument("--no-base", action="store_true", help="install torch into this env instead of the shared base")
    p.add_argument("--core", default=None, metavar="SRC", help="the core: a folder or a requirement (default: here)")
    p.add_argument("--no-editable", action="store_true", help="install folders as copies, not editable")
    sub.add_parser("list", parents=[common], help="the plugin envs, as JSON")
    sub.add_parser("path", parents=[common], help="the python of a plugin's env").add_argument("name")
    sub.add_parser("remove", parents=[common], help="delete a plugin's env").add_argument("name")
    return ap


def main(argv: list[str]) -> None:
    run_subcommand(_parser(), argv, "", _dispatch, "interrupted; run the same `env create` again to finish the env")


def _dispatch(args: argparse.Namespace) -> None:
    root = resolve_root(args.root)
    if args.command == "create":
        env = create_env(
            args.name,
            source=args.source,
            root=root,
            base=not args.no_base,
            core=args.core,
            editable=not args.no_editable,
        )
        print(f"{env.name}: {env.python}")
    elif args.command == "list":
        rows = [
            {
                "name": e.name,
                "path": str(e.path),
                "python": str(e.python),
                "base": str(e.base) if e.base else None,
                "source": e.record().get("source"),
            }
            for e in list_envs(root)
        ]
        print(json.dumps(rows, indent=2))
    elif args.command == "path":
        env = find_env(args.name, root)
        if env is None:
            command = f"python -m arc_fabric_core env create {args.name}"
            if args.root is not None:
                command += f" --root {args.root}"
            raise InputError("name", f"no env {args.name!r} under {root}; create it: {command}")
        print(env.python)
    else:
        print(f"removed {remove_env(args.name, root)}")
