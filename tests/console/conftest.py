"""The console's tests share the management service's fixtures (a real PostgreSQL per test)."""

from tests.management.conftest import environ, settings

__all__ = ["environ", "settings"]
