"""Signing in and out of the console (with a bearer token, when the service has tokens), and the
way in: ``/`` and ``/console`` lead to the list of codes."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from services.management.auth.roles import Role
from services.management.auth.sessions import Session, cookie_name
from services.management.console import forms
from services.management.console.frame import SECURITY_HEADERS, Page, Pages, page
from services.management.errors import DomainError

log = logging.getLogger(__name__)


class SignIn(Pages):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/console", self.root, methods=["GET", "HEAD"]),
            Route("/console/sign-in", self.sign_in, methods=["GET", "HEAD", "POST"]),
            Route("/console/sign-out", self.sign_out, methods=["POST"]),
        ]

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/console/", status_code=303, headers=SECURITY_HEADERS)

    async def sign_in(self, request: Request) -> Response:
        sessions = self.frame.sessions
        target = _local_target(request.query_params.get("next"))
        if not sessions.sign_in_required:
            return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        if request.method != "POST":
            return self.render(request, None, "sign_in.html", next=target, error=None)
        form = await self.frame.form(request)
        # No session yet, so no token to match: the browser's own headers judge where it came from.
        reason = sessions.forged(request.headers, Session("", "", 0), None)
        if reason is not None and "security token" not in reason:
            return self.frame.refused(request, None, reason)
        secret = forms.text(form, "token")
        try:
            token = await sessions.tokens.authenticate(secret) if secret and sessions.tokens else None
        except DomainError as exc:  # the database away: a service token cannot be looked up
            return self.frame.error_page(request, None, exc)
        target = _local_target(forms.text(form, "next"))
        if token is None:
            log.warning("console sign-in refused")
            return self.render(
                request,
                None,
                "sign_in.html",
                status_code=401,
                next=target,
                error="That token is not one this service accepts.",
            )
        _, cookie = sessions.issue(token.digest)
        log.info("console sign-in", extra={"token_name": token.name})
        response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        self.frame.set_cookie(request, response, cookie)
        return response

    @page(role=Role.viewer, write=True)
    async def sign_out(self, request: Request, current: Page) -> Response:
        sessions = self.frame.sessions
        await sessions.end(current.session)
        target = "/console/sign-in?notice=signed-out" if sessions.sign_in_required else "/console/"
        response = RedirectResponse(target, status_code=303)
        https = sessions.https(request.scope)
        response.delete_cookie(cookie_name(https), path="/", secure=https, httponly=True, samesite="strict")
        return response


def _local_target(value: str | None) -> str:
    """Where to go after signing in: a console path of this service, nothing else."""
    if (
        value
        and value.startswith("/console/")
        and "//" not in value
        and "\\" not in value
        and len(value) < 2000
    ):
        return value
    return "/console/"
