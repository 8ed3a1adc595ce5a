"""The generated OpenAPI document against the specification and against the service itself.

The walk reads every bound the document states (a minimum, a maximum, a length, a count, an enum)
for every query parameter and body field, and sends the bound, which must be accepted, and one step
past it, which must be refused with 422 naming that parameter or field. A bound changed in one place
only cannot pass.
"""

from __future__ import annotations

import secrets
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from services.management.api.openapi import document
from tests.management.conftest import create
from tests.management.test_contents import ROUND_TRIPS

pytestmark = pytest.mark.anyio

DOCUMENT = document()
SLUG = "abc"  # a short id: its short URL fits a small symbol, so the smallest image size is drawable


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def test_every_operation_is_described_and_answers_with_a_model() -> None:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["summary"], (path, method)
            for status, answer in operation["responses"].items():
                assert answer["description"], (path, method, status)
                assert "X-Request-ID" in answer["headers"]


# -- values of a given size, valid by every other rule ---------------------------------------------


def _url(length: int) -> str | None:
    base = "https://example.org/"
    return base + "a" * (length - len(base)) if length >= len(base) else None


def _slug(length: int) -> str:
    return (secrets.token_hex(length) + "x" * length)[:length]


def _zone(length: int) -> str | None:
    return next((name for name in sorted(zoneinfo.available_timezones()) if len(name) == length), None)


def _ids(length: int) -> str | None:
    """Ids of 3 to 64 characters, joined by commas, that many characters in all."""
    parts: list[int] = []
    remaining = length
    while remaining > 0:
        take = min(64, remaining)
        if 0 < remaining - take < 4:  # leave room for a comma and a shortest id
            take = remaining - 4
        parts.append(take)
        remaining -= take + 1
    if remaining != -1 or any(part < 3 for part in parts):
        return None
    return ",".join(_slug(part) for part in parts)


# field or parameter -> a valid value of that many characters (None: no valid value is that long)
FILLERS: dict[str, Callable[[int], str | None]] = {
    "target_url": _url,
    "fallback_url": _url,
    "slug": _slug,
    "tz": _zone,
    "ids": _ids,
}
# Values that cannot be made up: the server hands them out.
NOT_WALKED = {"cursor"}
# A bound of one parameter that holds only beside another: a 5 mm PNG needs a fine dpi to reach
# the smallest drawable size, the largest PNG needs the coarsest.
COMPANIONS: dict[tuple[str, str, str], dict[str, str]] = {
    ("getImagePng", "size_mm", "minimum"): {"dpi": "2400"},
    ("getImagePng", "size_mm", "maximum"): {"dpi": "72"},
    ("exportCodesZip", "size_mm", "minimum"): {"dpi": "2400"},
    ("exportCodesZip", "size_mm", "maximum"): {"dpi": "72"},
    # the most labels a page takes are the smallest
    ("exportCodesPdf", "columns", "maximum"): {"size_mm": "10"},
    ("exportCodesPdf", "rows", "maximum"): {"size_mm": "10"},
}
# A design option that holds only beside another: a gradient needs its second colour, the frame's
# text and place need a frame.
for _operation in ("getImagePng", "getImageSvg", "exportCodesZip", "exportCodesPdf"):
    COMPANIONS[(_operation, "gradient", "enum")] = {"fg2": "#1d4ed8"}
    COMPANIONS[(_operation, "frame_position", "enum")] = {"frame": "label"}
    COMPANIONS[(_operation, "frame_text", "minLength")] = {"frame": "label"}
    COMPANIONS[(_operation, "frame_text", "maxLength")] = {"frame": "label"}


@dataclass(frozen=True)
class Case:
    operation: str
    method: str
    path: str
    where: str  # "query" or "body"
    name: str
    value: Any
    accepted: bool
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        shown = repr(self.value)
        shown = shown if len(shown) < 20 else f"{type(self.value).__name__}[{len(self.value)}]"
        return f"{self.operation}-{self.name}={shown}-{'ok' if self.accepted else 'refused'}"


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema itself: a $ref followed, the non-null variant of a nullable one."""
    if "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    variants = [v for v in schema.get("anyOf", []) if v != {"type": "null"}]
    if len(variants) == 1:
        schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **variants[0]}
    return schema


OBJECT_ITEMS: dict[str, dict[str, Any]] = {
    "rules": {"if": {"device": ["ios"]}, "target_url": "https://example.org/ios"},
    "split": {"target_url": "https://example.org/a", "weight": 1},
}


def _text(name: str, length: int) -> str | None:
    return FILLERS.get(name, lambda n: "x" * n)(length)


def _values(name: str, schema: dict[str, Any], kind: str) -> Iterator[tuple[Any, bool, str]]:
    """(value, accepted, which bound) for every bound ``schema`` states; ``kind``: query or body."""
    schema = _resolve(schema)
    step = 1 if schema.get("type") == "integer" else 0.01
    as_query = kind == "query"

    def shown(number: float) -> Any:
        if not as_query:
            return number
        return str(int(number)) if schema.get("type") == "integer" else f"{number:.2f}"

    if "minimum" in schema:
        yield shown(schema["minimum"]), True, "minimum"
        yield shown(schema["minimum"] - step) if schema["minimum"] > 0 else "-1", False, "minimum"
    if "maximum" in schema:
        yield shown(schema["maximum"]), True, "maximum"
        yield shown(schema["maximum"] + step), False, "maximum"
    for bound, delta in (("minLength", -1), ("maxLength", 1)):
        if bound in schema:
            length = schema[bound]
            if (at := _text(name, length)) is not None:
                yield at, True, bound
            if length + delta >= 0 and (past := _text(name, length + delta)) is not None:
                yield past, False, bound
    if "enum" in schema:
        for member in schema["enum"]:
            yield str(member) if as_query else member, True, "enum"
        yield ("Z" if schema.get("type") == "string" else 303), False, "enum"
    if schema.get("type") == "array":
        items = _resolve(schema["items"])
        if "maxItems" in schema:
            count = schema["maxItems"]
            item = OBJECT_ITEMS.get(name)  # a list of objects (redirect rules): a valid one, repeated
            yield [item or f"t{n}" for n in range(count)], True, "maxItems"
            yield [item or f"t{n}" for n in range(count + 1)], False, "maxItems"
        for value, accepted, bound in _values(name, items, kind):
            yield [value], accepted, f"items.{bound}"


def cases() -> Iterator[Case]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            operation_id = operation["operationId"]
            for parameter in operation["parameters"]:
                if parameter.get("in") != "query" or parameter["name"] in NOT_WALKED:
                    continue
                for value, accepted, bound in _values(parameter["name"], parameter["schema"], "query"):
                    extra = COMPANIONS.get((operation_id, parameter["name"], bound), {})
                    yield Case(operation_id, method, path, "query", parameter["name"], value, accepted, extra)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            # An array of objects (the bulk create's) is walked through its objects' own operation.
            if body and "properties" in _resolve(body["schema"]):
                for name, schema in _resolve(body["schema"])["properties"].items():
                    for value, accepted, _ in _values(name, schema, "body"):
                        yield Case(operation_id, method, path, "body", name, value, accepted)


CASES = list(cases())


def test_the_walk_covers_every_kind_of_bound() -> None:
    walked = {(case.operation, case.name) for case in CASES}
    for expected in [
        ("listCodes", "limit"),
        ("listCodes", "q"),
        ("getHistory", "limit"),
        ("getImagePng", "size"),
        ("getImageSvg", "size_mm"),
        ("getImagePng", "dpi"),
        ("getImagePng", "border"),
        ("getImagePng", "ecc"),
        ("createCode", "target_url"),
        ("createCode", "slug"),
        ("createCode", "title"),
        ("createCode", "tags"),
        ("createCode", "redirect_status"),
        ("updateCode", "fallback_url"),
    ]:
        assert expected in walked, expected
    assert len(CASES) > 100


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_every_bound_in_the_document_is_the_one_enforced(client: httpx.AsyncClient, case: Case) -> None:
    if (await client.get(f"/api/v1/qr/{SLUG}")).status_code != 200:
        assert (await create(client, target_url="https://example.org/", slug=SLUG)).status_code == 201
    path = case.path.replace("{code_id}", SLUG)
    if case.where == "query":
        response = await client.request(case.method, path, params={case.name: case.value, **case.extra})
    else:
        body: dict[str, Any] = {case.name: case.value}
        if case.operation == "createCode" and case.name != "target_url":
            body["target_url"] = "https://example.org/"
        if case.operation == "createCode" and case.name == "kind" and case.value in ROUND_TRIPS:
            body = {"kind": case.value, "content": ROUND_TRIPS[case.value][0]}  # a content, no target
        if case.operation == "createToken":  # a fresh name each time: names are never reused
            body = {"name": f"walk-{uuid.uuid4().hex[:12]}", "role": "viewer", **body}
        response = await client.request(case.method, path, json=body)
    if case.accepted:
        assert response.status_code < 300, response.text
    else:
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"] == {"field": case.name}


def _enums(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, dict):
        if "enum" in node:
            yield node["enum"]
        for value in node.values():
            yield from _enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enums(value)


def test_no_enum_lists_one_value_twice() -> None:
    """A client generator makes an identifier of each enum value: two spellings of one value (L
    and l) make the whole document refused."""
    found = list(_enums(DOCUMENT))
    assert ["L", "M", "Q", "H"] in found
    for values in found:
        folded = [str(value).lower() for value in values]
        assert len(set(folded)) == len(folded), values


async def test_error_correction_is_accepted_in_any_case(client: httpx.AsyncClient) -> None:
    await create(client, target_url="https://example.org/", slug=SLUG)
    for level in ("l", "m", "Q", "h"):
        for path in (f"/api/v1/qr/{SLUG}/image.svg", "/api/v1/qr/export.pdf"):
            params = {"ecc": level, **({"ids": SLUG} if path.endswith("pdf") else {})}
            assert (await client.get(path, params=params)).status_code == 200, (path, level)
    refused = await client.get(f"/api/v1/qr/{SLUG}/image.svg", params={"ecc": "x"})
    assert refused.json()["error"] == {
        "code": "invalid_field",
        "message": "ecc: must be one of 'L', 'M', 'Q' or 'H'",
        "details": {"field": "ecc"},
    }
