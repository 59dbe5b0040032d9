"""A metric and what it returns (the built-in metrics and the registry both need these)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class MetricResult:
    name: str
    value: float
    per_frame: list[float] | None = None
    # The backbone had random weights (asked for explicitly): the value says nothing of quality.
    random_backbone: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Metric:
    """``fn(frames, prompt=..., reference=..., allow_random=..., options=...) -> MetricResult``."""

    name: str
    fn: Callable[..., MetricResult]
    description: str = ""
    needs_prompt: bool = False
    needs_reference: bool = False
