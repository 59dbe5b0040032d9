"""A parameter's error reads once: the value is named one time, whoever names it."""

from __future__ import annotations

import pytest
from pydantic import Field, field_validator

from arc_fabric_core.contract.errors import InputError
from arc_fabric_core.contract.models import validate_params
from arc_fabric_core.contract.params import GenerationParams


class Params(GenerationParams):
    rings: int = Field(4, ge=1)
    blocks: int = 3

    @field_validator("blocks")
    @classmethod
    def _blocks(cls, v: int) -> int:
        if v % 3:
            raise ValueError(f"must be a multiple of 3, got {v}")  # the plugin names the value itself
        return v


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"blocks": 4}, "blocks", "must be a multiple of 3, got 4"),
        ({"rings": 0}, "rings", "Input should be greater than or equal to 1 (got 0)"),
        ({"ringz": 1}, "ringz", "unknown parameter; allowed: blocks, fps, guidance, height, negative_prompt, "),
    ],
)
def test_the_value_is_named_once(values: dict, field: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        validate_params(Params, values)
    assert info.value.field == field and info.value.message.startswith(message), info.value.message
    assert info.value.message.count("got") <= 1, info.value.message


def test_a_number_given_for_text_is_the_text() -> None:
    # prompt=2026 on a command line is typed as a number by Hydra; the prompt is the text.
    assert validate_params(Params, {"prompt": 2026}).prompt == "2026"
