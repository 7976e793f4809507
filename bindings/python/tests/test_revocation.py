"""Revocation takes effect for cached results the moment the call returns; it
names its issuer (``"*"`` for every issuer) and says how far it reached."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest

import jwtwarden
from conftest import Issuer


def test_revoke_jti(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    other = issuer.mint()
    claims = verifier.verify(token)
    verifier.verify(other)
    assert verifier.verify_full(token).cached
    p = verifier.revoke_jti(claims["jti"], issuer=issuer.url, expires_at=claims["exp"])
    # Without revocation.redis a revocation reaches this process only.
    assert p is jwtwarden.Propagation.LOCAL
    with pytest.raises(jwtwarden.RevokedTokenError) as e:
        verifier.verify(token)
    assert e.value.code == 307
    assert verifier.verify_full(other).cached  # other tokens keep their cache entries
    assert verifier.metrics()["revocation_entries"] == 1
    (held,) = verifier.revocations()
    assert held["kind"] == "jti" and held["issuer"] == issuer.url and held["value"] == claims["jti"]
    assert held["issued_before"] is None
    assert held["until_ms"] is not None and held["until_ms"] >= claims["exp"] * 1000


def test_revoke_jti_without_expiry(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    assert verifier.revoke_jti(verifier.verify(token)["jti"], issuer=issuer.url) is jwtwarden.Propagation.LOCAL
    with pytest.raises(jwtwarden.RevokedTokenError):
        verifier.verify(token)


def test_revoke_subject_before_a_time(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    now = int(time.time())
    old = issuer.mint(sub="bob", iat=now - 600)
    newer = issuer.mint(sub="bob", iat=now + 5)
    carol = issuer.mint(sub="carol", iat=now - 600)
    for t in (old, newer, carol):
        verifier.verify(t)
    assert verifier.revoke_subject("bob", issuer=issuer.url, issued_before=now) is jwtwarden.Propagation.LOCAL
    with pytest.raises(jwtwarden.RevokedTokenError):
        verifier.verify(old)
    assert verifier.verify(newer)["sub"] == "bob"
    assert verifier.verify(carol)["sub"] == "carol"
    (held,) = verifier.revocations()
    assert (held["kind"], held["value"], held["issued_before"]) == ("subject", "bob", now)


def test_revoke_kid(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    verifier.verify(token)
    issuer.reset_stats()
    assert verifier.revoke_kid(issuer.kid, issuer=issuer.url) is jwtwarden.Propagation.LOCAL
    with pytest.raises(jwtwarden.KeyRevokedError) as e:
        verifier.verify(token)
    assert e.value.code == 308
    with pytest.raises(jwtwarden.KeyRevokedError):
        verifier.verify(issuer.mint(), fresh=True)
    assert issuer.stats()["jwks_requests"] == 0
    with pytest.raises(jwtwarden.InvalidArgumentError):
        verifier.revoke_kid("", issuer=issuer.url)
    with pytest.raises(jwtwarden.UnknownIssuerError):
        verifier.revoke_kid(issuer.kid, issuer="https://nope.example")
    (held,) = verifier.revocations()
    # Kept for revocation.kid_revocation_secs (default 30 days), not for ever.
    until_ms = held["until_ms"]
    rest = {k: v for k, v in held.items() if k != "until_ms"}
    assert rest == {"kind": "kid", "issuer": issuer.url, "value": issuer.kid, "issued_before": None}
    assert until_ms is not None and until_ms > (time.time() + 29 * 86400) * 1000


def test_the_issuer_is_required_and_keyword_only(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    revoke: Any = verifier.revoke_jti
    with pytest.raises(TypeError):
        revoke("j")
    with pytest.raises(TypeError):
        revoke("j", issuer.url)
    with pytest.raises(TypeError):
        verifier.revoke_subject("s", issuer=issuer.url)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        verifier.revoke_kid(issuer.kid)  # type: ignore[call-arg]
    assert verifier.revocations() == []


def test_revocation_is_issuer_scoped(new_issuer: Callable[..., Issuer]) -> None:
    """A ``jti`` or ``sub`` is unique only within its issuer (RFC 7519 §4.1.2, §4.1.7)."""
    a, b = new_issuer("RS256"), new_issuer("RS256")
    config = a.config()
    config["issuers"] += b.config()["issuers"]
    with jwtwarden.Verifier(config) as v:
        a_tok, b_tok = a.mint(jti="shared", sub="dave"), b.mint(jti="shared", sub="dave")
        v.verify(a_tok)
        v.verify(b_tok)
        assert v.revoke_jti("shared", issuer=a.url) is jwtwarden.Propagation.LOCAL
        with pytest.raises(jwtwarden.RevokedTokenError):
            v.verify(a_tok)
        assert v.verify_full(b_tok).claims["jti"] == "shared"  # B's token with the same jti

        v.revoke_subject("dave", issuer=b.url, issued_before=int(time.time()) + 1)
        with pytest.raises(jwtwarden.RevokedTokenError):
            v.verify(b_tok)
        assert v.verify(a.mint(sub="dave"))["sub"] == "dave"  # A's subject of the same name

        for call in (
            lambda: v.revoke_jti("j", issuer="https://nope.example"),
            lambda: v.revoke_subject("s", issuer="https://nope.example", issued_before=1),
            lambda: v.revoke_kid(a.kid, issuer="https://nope.example"),
        ):
            with pytest.raises(jwtwarden.UnknownIssuerError) as e:
                call()
            assert e.value.code == 303
        assert len(v.revocations()) == 2

        a_any, b_any = a.mint(jti="everywhere"), b.mint(jti="everywhere")
        v.verify(a_any)
        v.verify(b_any)
        assert v.revoke_jti("everywhere", issuer=jwtwarden.ANY_ISSUER) is jwtwarden.Propagation.LOCAL
        for t in (a_any, b_any):
            with pytest.raises(jwtwarden.RevokedTokenError):
                v.verify(t)
        assert {(r["kind"], r["issuer"], r["value"]) for r in v.revocations()} == {
            ("jti", a.url, "shared"),
            ("subject", b.url, "dave"),
            ("jti", "*", "everywhere"),
        }


def test_propagation_is_a_str_enum() -> None:
    P = jwtwarden.Propagation
    assert [p.value for p in P] == ["local", "fleet", "pending"]
    assert P("pending") is P.PENDING and P.FLEET == "fleet" and isinstance(P.LOCAL, str)
    assert str(P.PENDING) == "pending" and f"{P.LOCAL}" == "local"
    assert jwtwarden.ANY_ISSUER == "*"


def test_revocation_list_is_bounded(issuer: Issuer) -> None:
    config = issuer.config()
    config["revocation"] = {"max_entries": 2}
    with jwtwarden.Verifier(config) as v:
        v.revoke_jti("a", issuer=issuer.url)
        v.revoke_jti("b", issuer=jwtwarden.ANY_ISSUER)
        with pytest.raises(jwtwarden.RevocationListFullError) as e:
            v.revoke_jti("c", issuer=issuer.url)
        assert e.value.code == 502


def test_closed_verifier(issuer: Issuer) -> None:
    v = jwtwarden.Verifier(issuer.config())
    v.close()
    with pytest.raises(jwtwarden.InvalidArgumentError):
        v.revoke_jti("j", issuer=issuer.url)
    with pytest.raises(jwtwarden.InvalidArgumentError):
        v.revocations()


def test_without_a_fleet_feed_there_is_no_feed_state(verifier: jwtwarden.Verifier) -> None:
    assert verifier.revocation_feed_state() is None
    assert verifier.metrics()["revocations"]["fleet"] is None
