"""The console's scans pages keep to the API's range bounds, shown on the field to change."""

from __future__ import annotations

import httpx
import pytest

from tests.console.test_pages import console, make_code

pytestmark = pytest.mark.anyio
__all__ = ["console"]  # the fixture, used by name


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("from=1260-12-01&to=2026-12-01&interval=month", "from", "at most 20 years before to"),
        ("from=2026-10-01&to=2026-11-02&interval=hour", "interval", "hour covers at most 31 days"),
    ],
)
async def test_a_range_past_its_bounds_is_shown_on_its_field(
    console: httpx.AsyncClient, query: str, field: str, reason: str
) -> None:
    code = await make_code(console)
    for page in (f"/console/codes/{code}/scans?{query}", f"/console/scans?{query}"):
        answer = await console.get(page)
        assert answer.status_code == 422  # as every refused form
        assert f'id="e-{field}"' in answer.text
        assert reason in answer.text
        # What was asked for stays in the fields: the dates and the interval as chosen.
        for name, value in (pair.split("=") for pair in query.split("&")):
            if name == "interval":
                assert f'<option value="{value}" selected>' in answer.text
            else:
                assert f'name="{name}" type="date" value="{value}"' in answer.text
