"""Upper bounds on sizes, each with its reason.

A size field carries :class:`AtMost` in its annotation::

    steps: Annotated[int, AtMost(1000, "...why...")] = Field(50, ge=1)

The check runs before the field's own validators (a frame count too large is refused
as too large, not as "not 4k+1"), the refusal names the limit and why it is there,
and the JSON schema shows the limit (``maximum``, ``maxLength``, ``maxItems``), so a
form can hold it too. A text or a list is bounded by its length, and a refusal never
echoes it: it gives the length it got.
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

# A text encoder here keeps at most this many tokens of a prompt (Wan's UMT5 and LTX's T5
# take 512 at most); the tokenizer cuts the rest, but only after tokenising all of it.
MAX_TEXT_TOKENS = 512
# A T5 token averages about 4 characters of English and is seldom over 10; 20 per kept
# token leaves room for any spacing, punctuation or script, and refuses only text the
# encoder would cut off anyway.
CHARS_PER_TOKEN = 20


def prompt_chars(tokens: int) -> int:
    """The longest prompt, in characters, for a text encoder that keeps ``tokens`` tokens."""
    return tokens * CHARS_PER_TOKEN


@dataclass(frozen=True)
class AtMost:
    """Annotation metadata: a number of at most ``limit``, or a text or list of at most
    ``limit`` characters or entries; ``why`` says where the limit comes from."""

    limit: int
    why: str

    def check(self, value: Any) -> Any:
        """``value``, or the ValueError a validator raises, naming the limit and why."""
        if isinstance(value, str):
            size, got = len(value), f"{len(value)} characters"
            limit = f"{self.limit} characters"
        elif isinstance(value, Sized):
            size, got = len(value), f"{len(value)} entries"
            limit = f"{self.limit} entries"
        else:
            size, got, limit = value, str(value), str(self.limit)
        if size > self.limit:
            raise ValueError(f"at most {limit} ({self.why}); got {got}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        key = {"string": "maxLength", "array": "maxItems"}.get(out.get("type", ""), "maximum")
        out[key] = min(out.get(key, self.limit), self.limit)
        return out


def bound_of(model: type[Any], field: str) -> AtMost | None:
    """The :class:`AtMost` that ``model``'s ``field`` declares, if it declares one."""
    info = model.model_fields.get(field)
    if info is None:
        return None
    return next((m for m in info.metadata if isinstance(m, AtMost)), None)


def field_error(model: type[Any], field: str, message: str, value: Any) -> ValidationError:
    """A validation error located at ``field`` (a model validator's own errors have no
    location). ``value`` is what the user gave: say its size in ``message``, not it."""
    error = PydanticCustomError("value_error", message)
    return ValidationError.from_exception_data(
        model.__name__, [InitErrorDetails(type=error, loc=(field,), input=value)]
    )
