"""The operations under both front ends, called directly (no HTTP): each write records its history
entry with the caller's identity and counts itself once, and refusals are domain errors that name
the field they concern."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from services.management.auth.identity import Identity
from services.management.codes import Filters
from services.management.errors import BulkRefused, CodeNotFound, InvalidValue, SlugTaken
from services.management.metrics import ManagementMetrics
from services.management.schemas import BulkResult, NewQRCode
from services.management.service import Service
from services.management.settings import ManagementSettings

pytestmark = pytest.mark.anyio

WHO = Identity("203.0.113.7", request_id="req-1", token_name="ops")


@pytest.fixture
async def service(settings: ManagementSettings) -> AsyncIterator[Service]:
    made = Service(settings, ManagementMetrics(CollectorRegistry()))
    await made.open()
    try:
        yield made
    finally:
        await made.close()


def changes_counted(service: Service, action: str) -> float:
    return service.metrics.code_changes.labels(action)._value.get()  # type: ignore[no-any-return]


async def test_each_write_records_who_made_it_and_counts_once(service: Service) -> None:
    code = await service.codes.create(NewQRCode(target_url="https://example.org/", slug="menu"), WHO)
    await service.codes.update(code.id, {"title": "Menu"}, WHO)
    await service.analytics.erase(code.id, WHO)
    await service.codes.delete(code.id, WHO)
    history = await service.codes.history(code.id, WHO, limit=10)
    assert [entry.action for entry in history.items] == ["delete", "erase", "update", "create"]
    for entry in history.items:
        assert (entry.client_address, entry.request_id, entry.token_name) == ("203.0.113.7", "req-1", "ops")
    assert history.items[2].changes["title"].new == "Menu"
    for action in ("create", "update", "erase", "delete"):
        assert changes_counted(service, action) == 1


async def test_refusals_are_domain_errors_naming_their_field(service: Service) -> None:
    await service.codes.create(NewQRCode(target_url="https://example.org/", slug="menu"), WHO)
    with pytest.raises(SlugTaken) as taken:
        await service.codes.create(NewQRCode(target_url="https://example.org/", slug="MENU"), WHO)
    assert taken.value.field == "slug"
    assert "(as 'menu')" in taken.value.message
    with pytest.raises(CodeNotFound):
        await service.codes.update("nothing", {"title": "x"}, WHO)
    with pytest.raises(InvalidValue) as cursor:
        await service.codes.page(Filters(), WHO, limit=10, cursor="AAAA")
    assert (cursor.value.field, cursor.value.reason) == ("cursor", "is not a cursor from a previous page")
    assert changes_counted(service, "create") == 1  # the refused create counted nothing


async def test_bulk_refuses_every_row_at_once_and_keeps_an_answer_for_its_key(service: Service) -> None:
    csv = b"target_url,slug\nhttps://example.org/1,one\nnot a url,two\n"
    with pytest.raises(BulkRefused) as refused:
        await service.bulk.create("text/csv", csv, partial=False, identity=WHO)
    assert [(e.row, e.field) for e in refused.value.errors] == [(2, "target_url")]
    twice = b"target_url,slug\nhttps://example.org/1,one\nhttps://example.org/2,ONE\n"
    with pytest.raises(BulkRefused) as refused:
        await service.bulk.create("text/csv", twice, partial=False, identity=WHO)
    assert [(e.row, e.field) for e in refused.value.errors] == [(2, "slug")]
    assert (await service.codes.page(Filters(), WHO, limit=10, cursor=None)).items == []

    answers: list[object] = []

    async def answer(outcome: BulkResult | Exception) -> tuple[int, bytes]:
        answers.append(outcome)
        return 201, b"the answer"

    good = b"target_url\nhttps://example.org/a\nhttps://example.org/b\n"
    first = await service.bulk.create_once("key", answer, "text/csv", good, partial=False, identity=WHO)
    again = await service.bulk.create_once("key", answer, "text/csv", good, partial=False, identity=WHO)
    assert (first.replayed, again.replayed) == (False, True)
    assert first.content == again.content == b"the answer"
    assert len(answers) == 1  # the retry made nothing: it got the kept answer
    created = answers[0]
    assert isinstance(created, BulkResult)
    assert len(created.created) == 2
    assert changes_counted(service, "create") == 2
    for code in created.created:
        (entry,) = (await service.codes.history(code.id, WHO, limit=5)).items
        assert (entry.action, entry.token_name) == ("create", "ops")
    with pytest.raises(InvalidValue) as other:
        await service.bulk.create_once("key", answer, "text/csv", csv, partial=False, identity=WHO)
    assert other.value.field == "Idempotency-Key"
