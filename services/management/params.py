"""Query-string parameters: each one known, given once and checked; every refusal names it."""

from __future__ import annotations

from starlette.datastructures import QueryParams

from shared.errors import InvalidField
from shared.urls import has_control_characters


class Params:
    def __init__(self, query: QueryParams, *, allowed: tuple[str, ...]) -> None:
        self.values: dict[str, str] = {}
        for name in query:
            values = query.getlist(name)
            if name not in allowed:
                shown = name if name.isidentifier() and len(name) <= 40 else ascii(name[:40])
                raise InvalidField(shown, f"is not a parameter here ({', '.join(allowed)})")
            if len(values) != 1:
                raise InvalidField(name, "must be given once")
            self.values[name] = values[0]

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def integer(self, name: str, *, default: int, minimum: int, maximum: int) -> int:
        raw = self.values.get(name)
        if raw is None:
            return default
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 7 and minimum <= int(raw) <= maximum):
            raise InvalidField(name, f"must be a whole number from {minimum} to {maximum}")
        return int(raw)

    def optional_integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        if name not in self.values:
            return None
        return self.integer(name, default=minimum, minimum=minimum, maximum=maximum)

    def number(self, name: str, *, minimum: float, maximum: float) -> float | None:
        """A decimal number such as 25 or 25.5 (no exponents, no signs, at most two decimals)."""
        raw = self.values.get(name)
        if raw is None:
            return None
        whole, _, fraction = raw.partition(".")
        if not (
            raw.isascii()
            and whole.isdigit()
            and len(whole) <= 6
            and (not fraction or (fraction.isdigit() and len(fraction) <= 2))
            and minimum <= float(raw) <= maximum
        ):
            raise InvalidField(name, f"must be a number from {minimum:g} to {maximum:g}, such as 25 or 25.5")
        return float(raw)

    def boolean(self, name: str) -> bool | None:
        raw = self.values.get(name)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise InvalidField(name, "must be true or false")
        return raw == "true"

    def text(self, name: str, *, maximum: int) -> str | None:
        raw = self.values.get(name)
        if raw is None:
            return None
        if not raw or len(raw) > maximum or has_control_characters(raw):
            raise InvalidField(name, f"must be 1 to {maximum} printable characters")
        return raw

    def choice(self, name: str, choices: tuple[str, ...], *, default: str) -> str:
        raw = self.values.get(name, default).upper()
        if raw not in choices:
            raise InvalidField(name, f"must be one of {', '.join(choices)}")
        return raw
