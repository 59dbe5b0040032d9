"""The built-in operations, registered through ``arc_register_operations`` like a
plugin's (the registry names this module; nothing below imports it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arc_fabric_core.operations.decode import Decode
from arc_fabric_core.operations.edit import Edit
from arc_fabric_core.operations.extend import Extend
from arc_fabric_core.operations.fork import Fork
from arc_fabric_core.operations.generate import Generate
from arc_fabric_core.operations.handoff import HandOff
from arc_fabric_core.operations.resume import Resume
from arc_fabric_core.operations.rewind import Rewind

BUILTIN = (Generate, Resume, Fork, HandOff, Edit, Extend, Rewind, Decode)


def arc_register_operations(register: Callable[[Any], None]) -> None:
    for operation in BUILTIN:
        register(operation())
