"""The console's routes, page by page (no two pages share a path and method), then its static files
and, for any other path under /console/, its own 404 page."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from services.management.auth.oidc import Provider
from services.management.auth.sessions import Sessions
from services.management.console.code import CodePage
from services.management.console.codes import CodeList
from services.management.console.design import DesignPanel
from services.management.console.frame import HERE, Frame
from services.management.console.new_code import NewCode
from services.management.console.rules import RulesEditor
from services.management.console.scans import Scans
from services.management.console.sign_in import SignIn
from services.management.service import Service


def routes(service: Service, sessions: Sessions, oidc: Provider | None = None) -> list[BaseRoute]:
    frame = Frame(service, sessions, oidc)
    pages = (SignIn, CodeList, NewCode, CodePage, DesignPanel, RulesEditor, Scans)
    return [
        *(route for group in pages for route in group(frame, service).routes()),
        Mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static"),
        Route("/console/{rest:path}", frame.not_found, methods=["GET", "HEAD", "POST"]),
    ]
