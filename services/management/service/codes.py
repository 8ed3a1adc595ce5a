"""Codes: create, change, delete and read them; each write's transaction, history entry, metric
and log line, here and nowhere else.

Every operation is limited to the caller's tags (``identity.tags``, a token's scope): a code
carrying none of them is not found (404, never 403: ids do not leak), a new code must carry one, and
a change may not take away the last of them (:class:`NotPermitted`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from services.management import audit, codes, history
from services.management.auth.identity import Identity
from services.management.codes import Filters, check_scope
from services.management.errors import NotPermitted
from services.management.metrics import ManagementMetrics
from services.management.schemas import History, NewQRCode, QRCode, QRCodeList
from services.management.schemas.rules import COUNTRY_WITHOUT_GEOIP
from services.management.schemas.rules_try import RulesTrial, RulesTried
from services.management.service.database import Database
from shared.rules import DEFAULT, Scan, best_language, compile_rules, device_of

log = logging.getLogger(__name__)


class CodeService:
    def __init__(
        self, database: Database, metrics: ManagementMetrics, *, public_base_url: str, countries: bool = False
    ) -> None:
        self.database = database
        self.metrics = metrics
        self.public_base_url = public_base_url
        # GEOIP_DATABASE is configured (the redirect service's setting, read here too): without it a
        # country rule never holds, and a write that saves one is told so.
        self.countries = countries

    async def create(self, new: NewQRCode, identity: Identity) -> QRCode:
        """A new code; :class:`SlugTaken` when its slug is or ever was an id, in any case."""
        require_scope(identity, new.tags)
        async with self.database.connect(write=True) as conn:
            code, fields = await codes.create_code(conn, new, public_base_url=self.public_base_url)
            await history.record(conn, code.id, "create", fields, identity)
            await audit.record(
                conn, identity, "code.create", target=code.id, detail={"fields": sorted(fields)}
            )
        self.metrics.code_changes.labels("create").inc()
        log.info("code created", extra={"code_id": code.id})
        return self._warned(code, fields["rules"]["new"])

    async def update(self, code_id: str, changes: Mapping[str, Any], identity: Identity) -> QRCode:
        """The code with ``changes`` (validated values of writable fields); the history records
        the fields whose values really changed."""
        async with self.database.connect(write=True) as conn:
            await check_scope(conn, code_id, identity.tags)
            if "tags" in changes:
                require_scope(identity, changes["tags"])
            code, changed = await codes.update_code(conn, code_id, changes)
            if changed:
                await history.record(conn, code_id, "update", changed, identity)
                await audit.record(
                    conn, identity, "code.update", target=code_id, detail={"fields": sorted(changed)}
                )
        self.metrics.code_changes.labels("update").inc()
        log.info("code updated", extra={"code_id": code_id, "fields": sorted(changes)})
        return self._warned(code, changes.get("rules"))

    def _warned(self, code: QRCode, rules: list[dict[str, Any]] | None) -> QRCode:
        """``code`` with what its write was accepted despite: a country rule without a GeoIP file."""
        if not self.countries and rules and any("country" in rule["if"] for rule in rules):
            return code.model_copy(update={"warnings": [COUNTRY_WITHOUT_GEOIP]})
        return code

    async def try_rules(self, code_id: str, trial: RulesTrial, identity: Identity) -> RulesTried:
        """What the code's rules would give a made-up scan, by the redirect service's evaluator."""
        code = await self.get(code_id, identity)
        dumped = code.model_dump(mode="json", include={"rules", "split"})
        compiled = compile_rules(dumped["rules"], dumped["split"])
        moment = trial.moment or datetime.now(UTC)
        language = best_language(trial.language)
        scan = Scan(
            moment=moment.timestamp(),
            device=device_of(trial.agent),
            language=language,
            country=trial.country,
            query={
                name: [value] if isinstance(value, str) else value
                for name, value in (trial.query or {}).items()
            },
        )
        served, target = (
            (DEFAULT, None)
            if compiled is None
            else compiled.choose(code.id, scan, (trial.visitor or "").encode())
        )
        return RulesTried(
            served=served, target_url=target or code.target_url, device=scan.device, language=language
        )

    async def delete(self, code_id: str, identity: Identity) -> None:
        async with self.database.connect(write=True) as conn:
            await check_scope(conn, code_id, identity.tags)
            changed = await codes.delete_code(conn, code_id)
            await history.record(conn, code_id, "delete", changed, identity)
            await audit.record(conn, identity, "code.delete", target=code_id)
        self.metrics.code_changes.labels("delete").inc()
        log.info("code deleted", extra={"code_id": code_id})

    async def get(self, code_id: str, identity: Identity) -> QRCode:
        async with self.database.connect() as conn:
            await check_scope(conn, code_id, identity.tags)
            return await codes.get_code(conn, code_id)

    async def get_even_deleted(self, code_id: str, identity: Identity) -> QRCode:
        """The code, or its tombstone (state ``deleted``): a deleted code's scans stay readable."""
        async with self.database.connect() as conn:
            await check_scope(conn, code_id, identity.tags)
            return await codes.get_code_even_deleted(conn, code_id)

    async def page(
        self, filters: Filters, identity: Identity, *, limit: int, cursor: str | None
    ) -> QRCodeList:
        async with self.database.connect() as conn:
            return await codes.list_codes(conn, scoped(filters, identity), limit=limit, cursor=cursor)

    async def history(
        self, code_id: str, identity: Identity, *, limit: int, cursor: str | None = None
    ) -> History:
        async with self.database.connect() as conn:
            await check_scope(conn, code_id, identity.tags)
            return await history.page(conn, code_id, limit=limit, cursor=cursor)

    async def with_history(self, code_id: str, identity: Identity, *, limit: int) -> tuple[QRCode, History]:
        """The code and its latest changes, read together."""
        async with self.database.connect() as conn:
            await check_scope(conn, code_id, identity.tags)
            code = await codes.get_code(conn, code_id)
            return code, await history.page(conn, code_id, limit=limit, cursor=None)

    async def known_tags(self, identity: Identity) -> list[str]:
        async with self.database.connect() as conn:
            return await codes.known_tags(conn, scope=identity.tags)


def scoped(filters: Filters, identity: Identity) -> Filters:
    """``filters``, limited to the caller's tags."""
    return filters if identity.tags is None else replace(filters, scope=identity.tags)


def outside_scope(identity: Identity, tags: Iterable[str] | None) -> str | None:
    """Why a code with ``tags`` may not be written by the caller, or None when it may."""
    if identity.tags is None or identity.tags.intersection(tags or ()):
        return None
    return "must include one of this token's tags (" + ", ".join(sorted(identity.tags)) + ")"


def require_scope(identity: Identity, tags: Iterable[str] | None) -> None:
    """:class:`NotPermitted` when a code with ``tags`` would be outside the caller's tags."""
    reason = outside_scope(identity, tags)
    if reason is not None:
        raise NotPermitted(f"tags: {reason}", field="tags")
