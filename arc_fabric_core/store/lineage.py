"""Sessions form a tree: each fork or edit names its parent, the step and what changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from arc_fabric_core.store.session import Operation, SessionDoc


def children_of(docs: Iterable[SessionDoc]) -> dict[str | None, list[SessionDoc]]:
    """Children by parent id; roots (and orphans of deleted parents) under None."""
    docs = list(docs)
    ids = {d.id for d in docs}
    tree: dict[str | None, list[SessionDoc]] = {}
    for doc in sorted(docs, key=lambda d: (d.created_at, d.id)):
        parent = doc.parent if doc.parent in ids else None
        tree.setdefault(parent, []).append(doc)
    return tree


def ancestors(doc: SessionDoc, by_id: dict[str, SessionDoc]) -> list[str]:
    """Ids from the root down to ``doc``'s parent; a deleted ancestor ends the chain."""
    chain: list[str] = []
    seen = {doc.id}
    parent = doc.parent
    while parent is not None and parent not in seen:
        chain.append(parent)
        seen.add(parent)
        parent = by_id[parent].parent if parent in by_id else None
    return chain[::-1]


def edge(doc: SessionDoc) -> str:
    """How ``doc`` came from its parent, in a few words."""
    if doc.operation == Operation.CREATE:
        return "new"
    what = f"{doc.operation}@{doc.parent_step}"
    if doc.edit is not None and doc.edit.coverage < 1.0:
        what += f" mask {doc.edit.coverage:.0%}"
    if doc.overrides:
        what += " " + ", ".join(f"{k}={_short(v)}" for k, v in doc.overrides.items())
    return what


def summary(doc: SessionDoc, status: str | None = None) -> str:
    return (
        f"{doc.id}  {doc.model.name}/{doc.model.variant}  {status or doc.status.value:<9} "
        f"{doc.step_index:>3}/{doc.total_steps:<3} {edge(doc)}  {_short(doc.params.get('prompt', ''), 40)}"
    )


def render_tree(docs: Iterable[SessionDoc], status: Callable[[SessionDoc], str] | None = None) -> list[str]:
    """One line per session, children indented under their parent; ``status`` gives the
    status shown (e.g. the store's, which tells an interrupted run from a running one)."""
    tree = children_of(docs)
    lines: list[str] = []

    def walk(parent: str | None, prefix: str) -> None:
        kids = tree.get(parent, [])
        for n, doc in enumerate(kids):
            last = n == len(kids) - 1
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            lines.append(prefix + branch + summary(doc, status(doc) if status else None))
            walk(doc.id, prefix + ("" if parent is None else ("   " if last else "│  ")))

    walk(None, "")
    return lines


def _short(value: object, width: int = 24) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= width else text[: width - 1] + "…"
