"""A person's console session: who they are and their role inside the signed cookie."""

from __future__ import annotations

from pathlib import Path

from services.management.auth.roles import Role
from services.management.auth.sessions import LIFETIME_SECONDS, Person, Sessions
from services.management.auth.tokens import TokenFile


def test_a_persons_session_carries_who_and_the_role(tmp_path: Path) -> None:
    sessions = Sessions(b"k" * 32, None, people=True)
    person = Person("8f1c-subject", "ana@example.org", Role.editor)
    issued, cookie = sessions.issue(person=person, now=1000)
    read = sessions.verify(cookie, now=1001)
    assert read == issued
    assert read is not None
    assert read.person == person
    assert read.expires == 1000 + LIFETIME_SECONDS
    assert sessions.verify(cookie, now=1000 + LIFETIME_SECONDS) is None  # 12 hours, not more


def test_a_changed_role_or_another_key_opens_nothing(tmp_path: Path) -> None:
    sessions = Sessions(b"k" * 32, None, people=True)
    _, cookie = sessions.issue(person=Person("s", None, Role.viewer))
    sid, tag, expires, _viewer, mac = cookie.split(".")
    promoted = Person("s", None, Role.admin).encoded()
    assert sessions.verify(f"{sid}.{tag}.{expires}.{promoted}.{mac}") is None
    assert Sessions(b"x" * 32, None, people=True).verify(cookie) is None


def test_without_the_provider_a_persons_session_ends(tmp_path: Path) -> None:
    signed_in = Sessions(b"k" * 32, None, people=True)
    _, cookie = signed_in.issue(person=Person("s", "s@example.org", Role.admin))
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("ci:" + "0" * 64 + "\n")
    for later in (Sessions(b"k" * 32, None), Sessions(b"k" * 32, TokenFile(tokens_file))):
        assert later.verify(cookie) is None  # OIDC_ISSUER unset since


def test_an_anonymous_session_does_not_pass_once_people_sign_in(tmp_path: Path) -> None:
    _, anonymous = Sessions(b"k" * 32, None).issue()
    assert Sessions(b"k" * 32, None, people=True).verify(anonymous) is None


def test_a_sealed_sign_in_state_cannot_be_changed_or_kept_past_its_time() -> None:
    sessions = Sessions(b"k" * 32, None, people=True)
    sealed = sessions.seal("oidc-sign-in", {"state": "abc", "next": "/console/"}, lifetime=600, now=1000)
    assert sessions.unseal("oidc-sign-in", sealed, now=1001) == {"state": "abc", "next": "/console/"}
    assert sessions.unseal("oidc-sign-in", sealed, now=1600) is None
    assert sessions.unseal("another-purpose", sealed, now=1001) is None
    body, mac = sealed.split(".")
    assert sessions.unseal("oidc-sign-in", f"{body}x.{mac}", now=1001) is None
