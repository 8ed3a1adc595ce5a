"""Properties of the destination rules over generated input (Hypothesis)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from shared.errors import InvalidField
from shared.urls import ascii_url, location_bytes, own_hosts, validate_target_url

OWN = own_hosts("https://qr.example.org")
PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")

# Text that often looks like a URL, with the characters that make parsers disagree mixed in.
hostile = st.one_of(
    st.text(),
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from(
            ["http://", "https://", "HTTP://", "javascript:", "data:", "//", " http://", "\thttps://"]
        ),
        st.text(alphabet=st.sampled_from(list("ab.c/:@\\%?#&=-_~ \t\r\n\x00é\u202e\u200b[]1")), max_size=40),
    ),
)


@settings(max_examples=600)
@given(hostile)
def test_anything_is_either_refused_or_accepted_and_safe_on_the_wire(value: str) -> None:
    try:
        accepted = validate_target_url(value, own=OWN)
    except InvalidField as refusal:
        assert refusal.field == "target_url"  # noqa: PT017 - refusal is one allowed outcome of two
        return
    assert accepted == value or not value.isascii()  # a non-ASCII host is stored in ASCII
    wire = ascii_url(accepted)
    assert PRINTABLE_ASCII.fullmatch(wire)
    assert wire.lower().startswith(("http://", "https://"))
    assert validate_target_url(accepted, own=OWN) == accepted  # idempotent


@settings(max_examples=300)
@given(urls())
def test_ordinary_web_urls_are_accepted(value: str) -> None:
    assert validate_target_url(value, own=OWN) == value


@settings(max_examples=300)
@given(st.text())
def test_no_stored_value_can_split_a_response(value: str) -> None:
    header = location_bytes(value)
    assert b"\r" not in header
    assert b"\n" not in header
    assert PRINTABLE_ASCII.fullmatch(header.decode("ascii"))
