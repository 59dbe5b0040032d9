"""What every subcommand shares: one-line errors, argument parsing with key=value pairs,
folder checks and progress bars. Subcommands import these from here, never the dispatcher."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arc_fabric_core.contract.errors import ArcFabricError, InputError


def fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def run_subcommand(parser: Any, argv: list[str], pairs: str, dispatch: Callable[[Any], None], interrupted: str) -> None:
    """Parse ``argv`` and run ``dispatch``; errors become one ``error: field: ...`` line.

    argparse cannot take key=value positionals after options (``fork ID --step 3
    prompt=...``): the leftovers are folded into ``args.<pairs>`` when the chosen
    subcommand has that positional, and refused otherwise.
    """
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, pairs, None) is None or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        setattr(args, pairs, [*getattr(args, pairs), *extra])
    try:
        dispatch(args)
    except ArcFabricError as exc:
        fail(str(exc))
    except OSError as exc:  # the disk or the system refused a write: its reason, not a traceback
        fail(os_error_line(exc))
    except KeyboardInterrupt:
        fail(interrupted, code=130)


def check_folder(path: str | Path, field: str) -> Path:
    """``path`` as a folder to write to: refused if it, or the first of its parents that
    exists, is not a folder (missing folders are made)."""
    folder = Path(path).expanduser()
    for existing in (folder, *folder.parents):
        if existing.exists():
            if not existing.is_dir():
                what = "is" if existing == folder else f"is inside {existing}, which is"
                raise InputError(field, f"{folder} {what} a file, not a folder; give a folder (made if missing)")
            break
    return folder


def progress_listeners(total: int, start: int = 0, passes: list[int] | None = None) -> tuple[list[Any], Any]:
    """(listeners, close): a tqdm bar on a terminal; without one (logs, CI, nohup), one
    line per 10% of the steps. A session in several passes (blocks, chunks) also says
    which pass the step was in."""
    starts = [sum((passes or [])[:i]) for i in range(len(passes or []))]

    def where(step: int) -> str:
        if len(starts) < 2:
            return ""
        current = max(i for i, first in enumerate(starts) if first < max(step, 1))
        return f"pass {current + 1}/{len(starts)}"

    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc="denoising", unit="step", file=sys.stderr)

        def tick(ev: Any) -> None:
            if starts:
                bar.set_postfix_str(where(ev.step), refresh=False)
            bar.update(1)

        return [tick], bar.close
    every = max(1, total // 10)

    def listener(ev: Any) -> None:
        if ev.step % every == 0 or ev.step == ev.total:
            part = where(ev.step)
            sys.stderr.write(
                f"step {ev.step}/{ev.total} ({ev.step * 100 // ev.total}%){', ' + part if part else ''}, "
                f"{ev.step_seconds:.2f} s/step, elapsed {ev.elapsed_seconds:.1f} s, eta {ev.eta_seconds:.1f} s\n"
            )
            sys.stderr.flush()

    return [listener], lambda: None


def run_with_progress(engine: Any, session: Any, until: int | None = None, progress: bool = True) -> None:
    """``engine.run`` with a progress bar (or lines); Ctrl-C ends the command in one line
    saying which session is paused, where, and how to go on."""
    total = until if until is not None else session.doc.total_steps
    passes = session.doc.passes or None
    listeners, close = progress_listeners(total, session.step_index, passes) if progress else ([], lambda: None)
    try:
        engine.run(session, until=until, listeners=listeners)
    except KeyboardInterrupt:
        close()  # the bar first, then the line
        checkpoints = session.doc.checkpoints
        at = f"step {checkpoints[-1].step}" if checkpoints else "its start (no checkpoint yet)"
        fail(
            f"interrupted; session {session.id} is paused at {at}: `sessions resume {session.id}` goes on from there",
            130,
        )
    finally:
        close()


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: the file and the system's reason."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{(exc.strerror or str(exc)).lower()}"
