"""Run inside a network namespace (tests/deploy/harness.py): read a JSON list of requests on stdin
({"method", "url", "headers", "body"}), send each over HTTP from this namespace's address, and print
a JSON list of answers ({"status", "headers", "body" in base64}). Only the standard library: it runs
with any Python the namespace's host has."""

from __future__ import annotations

import base64
import http.client
import json
import sys
from urllib.parse import urlsplit


def send(spec: dict[str, object]) -> dict[str, object]:
    url = urlsplit(str(spec["url"]))
    connection = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=30)
    try:
        body = spec.get("body")
        connection.request(
            str(spec.get("method", "GET")),
            url.path + (f"?{url.query}" if url.query else ""),
            body=None if body is None else str(body).encode(),
            headers={str(k): str(v) for k, v in dict(spec.get("headers") or {}).items()},  # type: ignore[call-overload]
        )
        response = connection.getresponse()
        return {
            "status": response.status,
            "headers": {name.lower(): value for name, value in response.getheaders()},
            "body": base64.b64encode(response.read()).decode(),
        }
    finally:
        connection.close()


if __name__ == "__main__":
    json.dump([send(spec) for spec in json.load(sys.stdin)], sys.stdout)
