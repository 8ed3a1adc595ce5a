"""Signing in and out of the console (with a bearer token, when the service has tokens, or through
the identity provider, when OIDC_ISSUER is set), and the way in: ``/`` and ``/console`` lead to the
list of codes.

Through the provider: ``/console/auth/login`` sends the browser there (authorization code flow,
PKCE, ``state`` and ``nonce`` kept in a signed cookie for ten minutes), and the provider sends it
back to ``/console/auth/callback`` on this very origin, where the code is exchanged and the ID token
checked (auth/oidc.py). The person's session then carries who they are and the role their groups
map to. The callback answers a short page that moves on to the console by itself: the session
cookie is SameSite=Strict, which a browser leaves out of the rest of a navigation another site
started. Signing out ends the console's session and, where the provider offers it, sends the browser
on to end the provider's session too (RP-initiated logout), which then returns to the sign-in page.

Sign-ins (made and refused) and sign-outs go into the audit log; never a code or a token.
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from services.management import audit
from services.management.auth.door import as_token
from services.management.auth.identity import Identity, identity_of
from services.management.auth.oidc import Claims, ProviderUnavailable, TokenRefused
from services.management.auth.roles import Role
from services.management.auth.sessions import Person, Session, cookie_name
from services.management.console import forms
from services.management.console.frame import SECURITY_HEADERS, Page, Pages, page
from services.management.errors import DomainError
from services.management.models import audit_log

log = logging.getLogger(__name__)

SIGN_IN_SECONDS = 600  # from the login to the provider's callback
STATE_PURPOSE = "oidc-sign-in"
STATE_COOKIE = "qr_oidc"
CALLBACK_PATH = "/console/auth/callback"
SIGNED_OUT_PATH = "/console/sign-in?notice=signed-out"
PROVIDER_ERROR = re.compile(r"[a-z_]{1,40}")  # an OAuth error code, as the provider sends it


class SignIn(Pages):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.root, methods=["GET", "HEAD"]),
            Route("/console", self.root, methods=["GET", "HEAD"]),
            Route("/console/sign-in", self.sign_in, methods=["GET", "HEAD", "POST"]),
            Route("/console/sign-out", self.sign_out, methods=["POST"]),
            Route("/console/auth/login", self.login, methods=["GET"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
        ]

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/console/", status_code=303, headers=SECURITY_HEADERS)

    async def sign_in(self, request: Request) -> Response:
        sessions = self.frame.sessions
        target = _local_target(request.query_params.get("next"))
        if not sessions.sign_in_required:
            return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        if request.method != "POST":
            return self._sign_in_page(request, target)
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
            await self._audit(identity_of(request.scope), "sign-in", "refused", {"reason": "unknown token"})
            return self._sign_in_page(
                request, target, status_code=401, error="That token is not one this service accepts."
            )
        _, cookie = sessions.issue(token.digest)
        log.info("console sign-in", extra={"token_name": token.name})
        await self._audit(as_token(identity_of(request.scope), token), "sign-in", "ok")
        response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        self.frame.set_cookie(request, response, cookie)
        return response

    def _sign_in_page(
        self, request: Request, target: str, *, status_code: int = 200, error: str | None = None
    ) -> Response:
        return self.render(
            request,
            None,
            "sign_in.html",
            status_code=status_code,
            next=target,
            error=error,
            tokens=self.frame.sessions.tokens is not None,
            provider=self.frame.oidc is not None,
        )

    async def login(self, request: Request) -> Response:
        """Off to the identity provider, with this sign-in's state, nonce and PKCE verifier kept in
        a signed cookie until it comes back."""
        provider = self.frame.oidc
        if provider is None:
            return await self.frame.not_found(request)
        target = _local_target(request.query_params.get("next"))
        try:
            authorization = await provider.authorization(self._origin(request) + CALLBACK_PATH)
        except ProviderUnavailable as exc:
            log.warning("console sign-in: the identity provider is away: %s", exc)
            return self._provider_away(request)
        state = self.frame.sessions.seal(
            STATE_PURPOSE,
            {
                "state": authorization.state,
                "nonce": authorization.nonce,
                "verifier": authorization.verifier,
                "next": target,
            },
            lifetime=SIGN_IN_SECONDS,
        )
        response = RedirectResponse(authorization.url, status_code=303, headers=SECURITY_HEADERS)
        https = self.frame.sessions.https(request.scope)
        # Lax, not Strict: it must come back with the provider's redirect, a navigation another
        # site started.
        response.set_cookie(
            _state_cookie(https),
            state,
            max_age=SIGN_IN_SECONDS,
            path="/",
            httponly=True,
            samesite="lax",
            secure=https,
        )
        return response

    async def callback(self, request: Request) -> Response:
        """The provider's answer: the code exchanged, the ID token checked, the role mapped; then
        the person's console session."""
        provider = self.frame.oidc
        if provider is None:
            return await self.frame.not_found(request)
        sessions = self.frame.sessions
        https = sessions.https(request.scope)
        caller = identity_of(request.scope)
        kept = sessions.unseal(STATE_PURPOSE, request.cookies.get(_state_cookie(https)))
        params = request.query_params
        if kept is None or not hmac.compare_digest(params.get("state", "").encode(), kept["state"].encode()):
            reason = "no sign-in under way in this browser" if kept is None else "state does not match"
            return await self._refused(request, caller, 400, reason, _START_AGAIN)
        error = params.get("error")
        if error is not None:
            error = error if PROVIDER_ERROR.fullmatch(error) else "unknown"
            return await self._refused(
                request,
                caller,
                403 if error == "access_denied" else 400,
                f"the provider answered {error}",
                f"The identity provider did not sign you in ({error}).",
            )
        code = params.get("code")
        if not code or len(code) > 4096:
            return await self._refused(request, caller, 400, "no code", _START_AGAIN)
        try:
            claims = await provider.exchange(
                code, kept["verifier"], self._origin(request) + CALLBACK_PATH, kept["nonce"]
            )
        except ProviderUnavailable as exc:
            log.warning("console sign-in: the identity provider is away: %s", exc)
            return self._provider_away(request)
        except TokenRefused as exc:
            return await self._refused(
                request,
                caller,
                401,
                str(exc),
                "The identity provider's answer did not pass this service's checks.",
            )
        person_caller = _as_person(caller, claims)
        if claims.role is None:
            return await self._refused(
                request,
                person_caller,
                403,
                "no role",
                "Your account has no role here: ask an administrator to add you to one of the "
                "groups this service maps to a role.",
                title="No role here",
            )
        person = Person(claims.subject, claims.email, claims.role)
        _, cookie = sessions.issue(person=person)
        await self._audit(replace(person_caller, role=claims.role), "sign-in", "ok")
        log.info("console sign-in", extra={"subject": claims.subject, "role": claims.role.value})
        response = self.render(
            request,
            None,
            "continue.html",
            title="Signed in",
            message="You are signed in.",
            target=kept["next"],
        )
        self.frame.set_cookie(request, response, cookie)
        response.delete_cookie(_state_cookie(https), path="/", secure=https, httponly=True, samesite="lax")
        return response

    @page(role=Role.viewer, write=True)
    async def sign_out(self, request: Request, current: Page) -> Response:
        sessions = self.frame.sessions
        await sessions.end(current.session)
        await self._audit(current.identity, "sign-out", "ok")
        target = SIGNED_OUT_PATH if sessions.sign_in_required else "/console/"
        https = sessions.https(request.scope)
        provider = self.frame.oidc
        if current.session.person is not None and provider is not None:
            away = await provider.end_session_url(self._origin(request) + SIGNED_OUT_PATH)
        else:
            away = None
        if away is None:
            response: Response = RedirectResponse(target, status_code=303)
        else:
            # A page that moves on, not a redirect: the form's CSP (form-action 'self') would stop
            # a redirect to the provider's origin.
            response = self.render(
                request,
                None,
                "continue.html",
                title="Signed out",
                message="You are signed out of the console; now of your identity provider too.",
                target=away,
            )
        response.delete_cookie(cookie_name(https), path="/", secure=https, httponly=True, samesite="strict")
        return response

    def _origin(self, request: Request) -> str:
        """This console's origin as the browser sees it (the door has checked its host name)."""
        scheme = "https" if self.frame.sessions.https(request.scope) else "http"
        return f"{scheme}://{request.headers.get('host', '')}"

    def _provider_away(self, request: Request) -> Response:
        response = self.render(
            request,
            None,
            "error.html",
            status_code=503,
            title="Identity provider unavailable",
            message="The identity provider cannot be reached now, so nobody can sign in; try again in a "
            "moment. Sessions already open go on.",
        )
        response.headers["Retry-After"] = "30"
        return response

    async def _refused(
        self,
        request: Request,
        caller: Identity,
        status: int,
        reason: str,
        message: str,
        *,
        title: str = "Not signed in",
    ) -> Response:
        log.warning("console sign-in refused: %s", reason)
        await self._audit(caller, "sign-in", "refused", {"reason": reason})
        return self.render(
            request, None, "sign_in_refused.html", status_code=status, title=title, message=message
        )

    async def _audit(
        self, identity: Identity, action: str, outcome: str, detail: dict[str, Any] | None = None
    ) -> None:
        """One entry in the audit log; a person refused before any role is known has none."""
        row = audit.entry(identity, action, detail=detail, outcome=outcome)
        if identity.kind == "person" and outcome == "refused":
            row["role"] = None
        try:
            async with self.service.database.connect(write=True) as conn:
                await conn.execute(audit_log.insert().values(row))
        except DomainError as exc:  # the database is away: the sign-in's answer does not wait on it
            log.error("the audit log missed a %s: %s", action, exc)


_START_AGAIN = "This sign-in has expired or was started in another browser: start again."


def _as_person(caller: Identity, claims: Claims) -> Identity:
    return replace(caller, kind="person", subject=claims.subject, email=claims.email, tags=None)


def _state_cookie(https: bool) -> str:
    return f"__Host-{STATE_COOKIE}" if https else STATE_COOKIE


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
