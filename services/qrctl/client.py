"""Talking to the management API: request ids, timeouts, retries, and errors as exit codes.

Exit codes (stable, for scripts): 0 ok, 1 other error, 2 usage, 3 not found, 4 refused (401/403),
5 conflict, 69 service unavailable or unreachable. Only idempotent reads are retried, on a refused or
reset connection and on 502/503/504, with a short back-off; a write is sent once, so a lost answer
can never create a code twice. A 429 (the edge's rate limit: the request went no further) is waited
out as its Retry-After says and sent again, reads and writes alike, up to RATE_LIMIT_RETRIES times.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from services.qrctl.config import Config

OK, ERROR, USAGE, NOT_FOUND, REFUSED, CONFLICT, UNAVAILABLE = 0, 1, 2, 3, 4, 5, 69
_EXIT_BY_STATUS = {
    404: NOT_FOUND,
    401: REFUSED,
    403: REFUSED,
    409: CONFLICT,
    502: UNAVAILABLE,
    503: UNAVAILABLE,
    504: UNAVAILABLE,
    429: UNAVAILABLE,
}
_RETRIED_STATUSES = frozenset({502, 503, 504})
RATE_LIMIT_RETRIES = 8
MAX_RETRY_AFTER = 30.0  # seconds: a longer Retry-After is waited for this long, at most
_IDEMPOTENT = frozenset({"GET", "HEAD"})


class Failure(Exception):
    """The request did not succeed; ``exit_code`` says how, the message says what and where."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Api:
    def __init__(self, config: Config) -> None:
        self.config = config
        headers = {"User-Agent": "qrctl"}
        if config.token is not None:
            headers["Authorization"] = f"Bearer {config.token}"
        self._client = httpx.Client(base_url=config.api_url, timeout=config.timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def request(
        self, method: str, path: str, *, allow: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        """The response to a request that succeeded (2xx, 304, or a status in ``allow``);
        :class:`Failure` otherwise."""
        for _ in range(RATE_LIMIT_RETRIES):
            response, request_id = self._attempts(method, path, kwargs)
            if response.status_code != 429:
                break
            time.sleep(_retry_after(response))
        else:
            response, request_id = self._attempts(method, path, kwargs)
        if response.status_code < 400 or response.status_code == 304 or response.status_code in allow:
            return response
        raise _failure(response, request_id)

    @contextlib.contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A GET whose body is read as it arrives (an export); :class:`Failure` as :meth:`request`."""
        request_id = uuid.uuid4().hex
        headers = {**kwargs.pop("headers", {}), "X-Request-ID": request_id}
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                with self._client.stream("GET", path, headers=headers, timeout=None, **kwargs) as response:
                    if response.status_code == 429 and attempt < RATE_LIMIT_RETRIES:
                        wait = _retry_after(response)
                    elif response.status_code >= 400:
                        response.read()
                        raise _failure(response, request_id)
                    else:
                        yield response
                        return
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
                raise Failure(f"cannot read from {self.config.api_url}: {reason}", UNAVAILABLE) from None
            time.sleep(wait)

    def _attempts(self, method: str, path: str, kwargs: dict[str, Any]) -> tuple[httpx.Response, str]:
        """The first answer that is not a failure worth retrying (a 429 included: the caller waits)."""
        request_id = uuid.uuid4().hex
        headers = {**kwargs.get("headers", {}), "X-Request-ID": request_id}
        rest = {k: v for k, v in kwargs.items() if k != "headers"}
        attempts = 1 + (self.config.retries if method in _IDEMPOTENT else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._client.request(method, path, headers=headers, **rest)
            except httpx.TimeoutException:
                if last:
                    maybe = (
                        ""
                        if method in _IDEMPOTENT
                        else "; the change may have been made all the same: look before sending it again"
                    )
                    raise Failure(
                        f"no answer from {self.config.api_url} within {self.config.timeout:g} s "
                        f"(request id {request_id}){maybe}",
                        UNAVAILABLE,
                    ) from None
            except httpx.TransportError as exc:
                if last:
                    reason = str(exc) or type(exc).__name__
                    raise Failure(
                        f"cannot reach the management API at {self.config.api_url}: {reason}", UNAVAILABLE
                    ) from None
            else:
                if last or response.status_code not in _RETRIED_STATUSES:
                    return response, request_id
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs: Any) -> tuple[Any, str]:
        """The decoded body and its text (for ``--json``, which prints the API's JSON unchanged)."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json(), response.text
        except ValueError:
            raise Failure(
                f"{self.config.api_url} did not answer JSON (is it the management API?)", ERROR
            ) from None


def _retry_after(response: httpx.Response) -> float:
    """Seconds to wait before sending a refused request again (Retry-After in seconds, else 1)."""
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.1), MAX_RETRY_AFTER) if seconds == seconds else 1.0


def _failure(response: httpx.Response, request_id: str) -> Failure:
    code, message = f"http_{response.status_code}", response.text.strip()[:200] or response.reason_phrase
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        pass  # the edge's own refusals (403, 429) are plain text
    served_id = response.headers.get("x-request-id", request_id)
    return Failure(
        f"{message} ({code}, HTTP {response.status_code}, request id {served_id})",
        _EXIT_BY_STATUS.get(response.status_code, ERROR),
    )


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
