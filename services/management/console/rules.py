"""The console's editor of a code's redirect rules, on the code's page: its ``rules`` and ``split``
as JSON (validated as the API validates them, every problem named by its path), and a trial of a
made-up scanner (``rules/try``'s operation: the redirect service's own evaluator).

The markup is ``_rules.html``, included in the code's page; a refused edit or a trial shows the
code's page again with the editor's state (``rules_form``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from services.management import schemas
from services.management.auth.roles import Role
from services.management.console import forms
from services.management.console.code import code_page
from services.management.console.forms import FormErrors
from services.management.console.frame import Frame, Page, Pages, code_id, page
from services.management.errors import InvalidValue
from services.management.schemas.rules_try import RulesTrial, RulesTried
from services.management.service import Service

# The scanners a trial offers, by the user agent each sends.
AGENTS = {
    "iphone": (
        "an iPhone (Safari)",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ),
    "android": (
        "an Android phone (Chrome)",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36",
    ),
    "desktop": (
        "a desktop (Firefox)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    "bot": (
        "a crawler (Googlebot)",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ),
}
TRIAL_FIELDS = ("agent", "language", "country", "moment", "tz", "query", "visitor")


@dataclass
class RulesForm:
    """What the editor shows: the JSON as typed, the problems by path, a trial and its answer."""

    rules: str
    split: str
    errors: dict[str, str] = field(default_factory=dict)
    trial: dict[str, str] = field(default_factory=dict)
    trial_errors: dict[str, str] = field(default_factory=dict)
    tried: RulesTried | None = None
    warnings: list[str] = field(default_factory=list)  # what a saved change was accepted despite


def as_text(code: schemas.QRCode) -> tuple[str, str]:
    """The code's rules and split as the editor shows them (indented JSON; no split: empty)."""
    dumped = code.model_dump(mode="json", include={"rules", "split"})
    split = "" if dumped["split"] is None else json.dumps(dumped["split"], indent=2, ensure_ascii=False)
    return json.dumps(dumped["rules"], indent=2, ensure_ascii=False), split


class RulesEditor(Pages):
    def __init__(self, frame: Frame, service: Service) -> None:
        super().__init__(frame, service)
        # The trial's scanners, for the code's page whichever page group renders it.
        frame.templates.env.globals["rules_agents"] = AGENTS

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/console/codes/{code_id}/rules", self.save, methods=["POST"]),
            Route("/console/codes/{code_id}/rules/try", self.try_rules, methods=["GET", "HEAD"]),
        ]

    @page(role=Role.editor, write=True)
    async def save(self, request: Request, current: Page) -> Response:
        code = code_id(request)
        typed = RulesForm(forms.text(current.posted, "rules"), forms.text(current.posted, "split"))
        values: dict[str, Any] = {}
        for name, text in (("rules", typed.rules), ("split", typed.split)):
            try:
                values[name] = json.loads(text) if text else ([] if name == "rules" else None)
            except (ValueError, RecursionError):
                typed.errors[name] = "must be JSON: a list such as [] or [{...}]"
        try:
            if not typed.errors:
                changes = forms.validated(
                    schemas.QRCodeChanges, values, context=self.service.context
                ).changes()
                typed.warnings = (await self.service.codes.update(code, changes, current.identity)).warnings
        except (FormErrors, InvalidValue) as exc:
            typed.errors = exc.errors if isinstance(exc, FormErrors) else {exc.field: exc.reason}
        if typed.errors:
            return await code_page(self, request, current, code, rules_form=typed, status_code=422)
        if typed.warnings:  # saved, and said so beside the rules
            return await code_page(self, request, current, code, rules_form=typed)
        return RedirectResponse(f"/console/codes/{code}?notice=saved#rules-heading", status_code=303)

    @page(role=Role.editor)
    async def try_rules(self, request: Request, current: Page) -> Response:
        code = code_id(request)
        given = {name: request.query_params.get(name, "").strip()[:512] for name in TRIAL_FIELDS}
        shown = await self.service.codes.get(code, current.identity)
        typed = RulesForm(*as_text(shown), trial=given)
        body: dict[str, Any] = {
            "agent": AGENTS[given["agent"]][1] if given["agent"] in AGENTS else None,
            "language": given["language"] or None,
            "country": given["country"] or None,
            "visitor": given["visitor"] or None,
        }
        try:
            zone = ZoneInfo(given["tz"] or "UTC")
            if given["moment"]:
                body["moment"] = datetime.fromisoformat(given["moment"]).replace(tzinfo=zone).isoformat()
        except (ZoneInfoNotFoundError, ValueError):
            typed.trial_errors["moment"] = "must be a date and time, and tz a zone such as Europe/Paris"
        if given["query"]:
            pairs = [part.partition("=") for part in given["query"].lstrip("?").split("&") if part]
            body["query"] = {name: value for name, _, value in pairs}
        if not typed.trial_errors:
            try:
                trial = forms.validated(RulesTrial, body, context={})
                typed.tried = await self.service.codes.try_rules(code, trial, current.identity)
            except (FormErrors, InvalidValue) as exc:
                typed.trial_errors = exc.errors if isinstance(exc, FormErrors) else {exc.field: exc.reason}
        return await code_page(self, request, current, code, rules_form=typed)
