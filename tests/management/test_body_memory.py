"""What reading a JSON body costs in memory, measured with tracemalloc: a few times the body's size,
whatever the number of names or values in it. (The service's own figures, for a 16 MiB bulk body of
each shape, are in the closing note of the change that bounded them.)"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from services.management import bulk
from services.management.errors import DomainError, InvalidValue
from services.management.inputs import validate
from services.management.schemas import NewQRCode, QRCodeChanges
from shared.errors import InvalidField, ServiceError


def peak(call: Callable[[], Any]) -> tuple[Any, int]:
    """What ``call`` returned or raised, and the most memory Python held meanwhile."""
    tracemalloc.start()
    try:
        try:
            outcome = call()
        except (ServiceError, DomainError) as exc:
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("model", "first"), [(NewQRCode, "k00000"), (QRCodeChanges, "id")])
def test_unknown_names_in_a_body_are_refused_at_the_first_without_a_list_of_them(
    model: type[NewQRCode | QRCodeChanges], first: str
) -> None:
    names = {f"k{n:05d}": 0 for n in range(5000)}  # a 64 KiB body: MAX_BODY_BYTES by default
    body = {"id": "x", **names} if first == "id" else {"target_url": "https://example.org/", **names}
    refused, used = peak(lambda: validate(model, body, context={}, unknown=model.unknown))
    assert isinstance(refused, InvalidField)
    assert refused.field == first  # as before: the first unknown (or read-only) name
    assert used < len(json.dumps(body))  # pydantic's list of 5,000 errors took 53 times the body


def test_a_bulk_body_of_unknown_names_costs_a_few_times_its_size() -> None:
    rows = [
        {"target_url": "https://example.org/"} | {f"k{r:02d}{n:05d}": 0 for n in range(20_000)}
        for r in range(15)
    ]
    body = json.dumps(rows).encode()
    parsed, used = peak(lambda: bulk.parse("application/json", body, context={}))
    assert [(e.row, e.field) for e in parsed.refused.errors] == [
        (r, f"k{r - 1:02d}00000") for r in range(1, 16)
    ]
    # json.loads keeps every distinct name until it is done (its memo): the rest is the error list,
    # which took 18 times the body before each row stopped at its first unknown name.
    assert used < 10 * len(body)


def test_a_bulk_body_of_more_values_than_codes_have_is_refused_before_it_is_parsed() -> None:
    body = b'[{"target_url": "https://example.org/", "tags": [' + b",".join([b"[]"] * 1_000_000) + b"]}]"
    refused, used = peak(lambda: bulk.parse("application/json", body, context={}))
    assert isinstance(refused, InvalidValue)
    assert refused.field == "body"
    assert used < len(body) // 10  # parsed, a list object for every three bytes: 41 times the body
