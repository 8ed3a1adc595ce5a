"""Where a scan came from: country (and city, where the file has it) from a MaxMind-format database.

``GEOIP_DATABASE`` names the file (GeoLite2 Country or City, DB-IP lite: downloaded by the
operator; none ships with the project). It is read by the scan writer from the client address
before the address is discarded; the address itself is never stored. Without the file there are no
countries, and the API says so (``"countries": null``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class GeoIP:
    def __init__(self, path: Path) -> None:
        import maxminddb  # only when a database is configured

        self._reader = maxminddb.open_database(str(path))
        log.info("geoip database open", extra={"type": self._reader.metadata().database_type})

    def locate(self, address: str | None) -> tuple[str | None, str | None]:
        """The ISO country code and the city's English name of ``address`` (``None`` where unknown)."""
        if not address:
            return None, None
        try:
            found: Any = self._reader.get(address)
        except ValueError:  # not an address the file covers
            return None, None
        if not isinstance(found, dict):
            return None, None
        country = (found.get("country") or found.get("registered_country") or {}).get("iso_code")
        city = ((found.get("city") or {}).get("names") or {}).get("en")
        return (country if isinstance(country, str) else None), (city if isinstance(city, str) else None)

    def close(self) -> None:
        self._reader.close()
