"""``python -m services.management``: serve the management API with Hypercorn.

Served in-process (``hypercorn.asyncio.serve``) so that this process is the one to signal: SIGTERM
or SIGINT stops accepting, lets requests in flight finish, then runs the lifespan's shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.types import ASGIApp

from services.management.app import create_app
from services.management.settings import ManagementSettings
from shared import logging as qrlog
from shared.metrics import ensure_multiprocess_dir
from shared.settings import ConfigError


async def _serve(app: ASGIApp, settings: ManagementSettings) -> None:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None  # our middleware writes the access line
    config.errorlog = logging.getLogger("hypercorn.error")  # a logger, not a stream: our JSON handler
    config.graceful_timeout = 10.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


def main() -> None:
    try:
        settings = ManagementSettings.from_env(os.environ)
        ensure_multiprocess_dir()
        app = create_app(settings)
    except ConfigError as exc:
        raise SystemExit(f"management service: {exc}") from None
    qrlog.configure(settings.log_level)
    asyncio.run(_serve(app, settings))


if __name__ == "__main__":
    main()
