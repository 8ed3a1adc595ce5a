"""The console's tests share the management service's fixtures (a real PostgreSQL per test) and,
in a browser, the end-to-end tests' stack (both services and Traefik)."""

from tests.e2e.conftest import running_stack
from tests.management.conftest import environ, settings

__all__ = ["environ", "running_stack", "settings"]
