"""The Verifier API: construction, results, lifecycle, metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest

import jwtwarden
from conftest import Issuer


def test_package_surface() -> None:
    assert jwtwarden.__version__ == jwtwarden._native.__version__
    assert isinstance(jwtwarden.CORE_VERSION, str)
    for name in jwtwarden.__all__:
        assert hasattr(jwtwarden, name), name
    assert jwtwarden.Verifier.__module__ == "jwtwarden._native"


def test_config_from_dict_json_bytes_and_files(issuer: Issuer, tmp_path: Path) -> None:
    config = issuer.config()
    token = issuer.mint()
    path = tmp_path / "jwtwarden.json"
    path.write_text(json.dumps(config))
    sources: list[Any] = [config, json.dumps(config), json.dumps(config).encode(), str(path), path]
    toml_text = (
        f'[http]\nallow_http = true\n\n[[issuers]]\nissuer = "{issuer.url}"\n'
        f'jwks_uri = "{issuer.jwks_uri}"\naudiences = ["api"]\n'
    )
    # TOML by extension, and by content under any other name (the CLI's rule).
    for name in ("jwtwarden.toml", "jwtwarden.conf"):
        (tmp_path / name).write_text(toml_text)
        sources.append(tmp_path / name)
    for source in sources:
        with jwtwarden.Verifier(source) as v:
            assert v.verify(token)["sub"] == "user", source


def test_invalid_config_names_the_field(issuer: Issuer) -> None:
    config = issuer.config(refresh={"min_ttl_secs": "soon"})
    with pytest.raises(jwtwarden.InvalidConfigError) as e:
        jwtwarden.Verifier(config)
    assert "issuers[0].refresh.min_ttl_secs" in str(e.value)
    assert e.value.code == 500 and e.value.category == "usage"
    assert isinstance(e.value, ValueError)

    with pytest.raises(jwtwarden.InvalidConfigError, match="issuers"):
        jwtwarden.Verifier({})
    with pytest.raises(jwtwarden.InvalidConfigError, match=r"issuers\[0\]\.bogus|bogus"):
        jwtwarden.Verifier(issuer.config(bogus=1))
    with pytest.raises(jwtwarden.InvalidConfigError, match="not JSON-compatible"):
        jwtwarden.Verifier(issuer.config(audiences={"api"}))
    with pytest.raises(jwtwarden.InvalidConfigError, match="cannot read"):
        jwtwarden.Verifier("/nonexistent/jwtwarden.json")
    with pytest.raises(jwtwarden.InvalidConfigError):
        jwtwarden.Verifier('{"issuers": [')
    with pytest.raises(TypeError, match="config must be"):
        jwtwarden.Verifier(42)  # type: ignore[arg-type]


def test_verify_returns_claims(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint(sub="alice", scope="read write", roles=["a", "b"], meta={"n": 1, "f": 1.5, "t": True})
    claims = verifier.verify(token)
    assert claims["sub"] == "alice"
    assert claims["iss"] == issuer.url
    # Read-only all the way down: arrays are tuples, objects read-only mappings.
    assert claims["roles"] == ("a", "b")
    assert claims["meta"] == {"n": 1, "f": 1.5, "t": True}
    assert verifier.verify(token.encode()) == claims
    assert jwtwarden.thaw(claims) == {**claims, "roles": ["a", "b"], "meta": {"n": 1, "f": 1.5, "t": True}}
    with pytest.raises(TypeError, match="token must be str or bytes"):
        verifier.verify(42)  # type: ignore[arg-type]


def test_token_argument_forms(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    """A plain str takes a fast path; a str subclass and bytes verify the same,
    and what is neither, or not encodable as UTF-8, is refused before the engine."""

    class Token(str):
        pass

    token = issuer.mint(sub="alice")
    claims = verifier.verify(token)
    assert verifier.verify(Token(token)) == claims
    assert verifier.verify(token.encode()) == claims
    with pytest.raises(TypeError, match="token must be str or bytes"):
        verifier.verify(bytearray(token.encode()))  # type: ignore[arg-type]
    # A lone surrogate has no UTF-8 form: Python's own error, nothing verified.
    before = verifier.metrics()
    for bad in (token[:-1] + "\ud800", Token(token[:-1] + "\ud800")):
        with pytest.raises(UnicodeEncodeError):
            verifier.verify(bad)
    assert verifier.metrics() == before


def test_claims_cannot_be_changed_by_another_caller(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint(sub="alice", roles=["a", "b"], meta={"n": 1, "tags": ["x"]})
    claims = verifier.verify(token)
    assert isinstance(claims, Mapping)
    with pytest.raises(TypeError):
        claims["sub"] = "mallory"  # type: ignore[index]
    with pytest.raises(TypeError):
        del claims["sub"]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        claims.clear()  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        claims["roles"].append("admin")
    with pytest.raises(TypeError):
        claims["meta"]["n"] = 2
    with pytest.raises(AttributeError):
        claims["meta"]["tags"].append("y")
    # dict(...) is a copy of the caller's own (top level); thaw() a deep one.
    mine = dict(claims)
    mine["sub"] = "mallory"
    deep = jwtwarden.thaw(claims)
    deep["roles"].append("admin")
    deep["meta"]["tags"].append("y")
    json.dumps(deep)
    for _ in range(3):
        again = verifier.verify(token)
        assert again["sub"] == "alice"
        assert again["roles"] == ("a", "b")
        assert again["meta"] == {"n": 1, "tags": ("x",)}
    # Every hit of one cached result hands out the same read-only object
    # (the first, fresh result has its own equal one: the cache keeps a
    # compact copy of it, whose claims are converted on its first hit).
    hit = verifier.verify(token)
    assert verifier.verify(token) is hit
    assert verifier.verify_full(token).claims is hit
    assert hit == claims
    # A fresh verification is a new result with its own (equal) claims.
    assert verifier.verify(token, fresh=True) == claims


def test_claims_agree_with_pyjwt(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint(sub="bob", aud=["api", "web"], scope="a b", tenant="acme", n=3, meta={"k": [1, 2]})
    pyjwt_claims = jwt.decode(token, options={"verify_signature": False})
    claims = verifier.verify(token)
    assert jwtwarden.thaw(claims) == pyjwt_claims
    assert dict(claims) == {**pyjwt_claims, "aud": ("api", "web"), "meta": {"k": (1, 2)}}
    assert claims["aud"] == ("api", "web") and claims["scope"].split() == ["a", "b"]


def test_verify_full_says_where_trust_came_from(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    before = time.time()
    first = verifier.verify_full(token)
    assert not first.cached
    assert first.issuer == issuer.url
    assert first.kid == issuer.kid
    assert first.alg == "RS256"
    assert first.claims["sub"] == "user"
    assert first.expires_at == first.claims["exp"]
    assert before - 1 <= first.verified_at <= time.time() + 1
    assert first.verified_at_ms == int(round(first.verified_at * 1000))

    second = verifier.verify_full(token)
    assert second.cached
    assert second.verified_at == first.verified_at  # the time of the original check

    third = verifier.verify_full(token, fresh=True)
    assert not third.cached
    assert "cached=True" in repr(second) and token not in repr(second)


def test_bump_policy_version_invalidates_the_cache(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    verifier.verify(token)
    assert verifier.verify_full(token).cached
    version = verifier.bump_policy_version()
    assert verifier.bump_policy_version() == version + 1
    assert not verifier.verify_full(token).cached


def test_explicit_issuer(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    assert verifier.verify(token, issuer=issuer.url)["sub"] == "user"
    with pytest.raises(jwtwarden.UnknownIssuerError):
        verifier.verify(token, issuer="https://not-configured.example")


def test_close_and_context_manager(issuer: Issuer) -> None:
    token = issuer.mint()
    with jwtwarden.Verifier(issuer.config()) as v:
        assert not v.closed
        v.verify(token)
        assert issuer.url in repr(v)
    assert v.closed
    assert "closed" in repr(v)
    with pytest.raises(jwtwarden.InvalidArgumentError, match="closed"):
        v.verify(token)
    with pytest.raises(jwtwarden.InvalidArgumentError):
        v.metrics()
    v.close()  # idempotent


def test_metrics_and_prometheus(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    verifier.verify(token)
    verifier.verify(token)
    with pytest.raises(jwtwarden.InvalidSegmentsError):
        verifier.verify("not-a-token")
    m = verifier.metrics()
    assert m["verifications"]["ok_fresh"] == 1
    assert m["verifications"]["ok_cached"] == 1
    assert m["verifications"]["rejected"] == {"malformed_token": 1}
    assert m["cache"]["hits"] == 1 and m["cache"]["entries"] == 1
    (iss,) = m["issuers"]
    assert iss["issuer"] == issuer.url
    assert iss["health"] == "fresh"
    assert iss["fetches"]["startup"] == 1
    assert iss["keys"] == 4
    text = verifier.prometheus()
    assert 'jwtwarden_verifications_total{outcome="ok",source="cache"} 1' in text
    assert "# EOF" in text


def test_issuers_and_health(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    assert verifier.issuers() == [issuer.url]
    assert verifier.issuer_health(issuer.url) == "fresh"
    with pytest.raises(jwtwarden.UnknownIssuerError):
        verifier.issuer_health("https://nope.example")


def test_refresh_issuer_counts_a_manual_fetch(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    issuer.reset_stats()
    verifier.refresh_issuer(issuer.url)
    assert issuer.stats()["jwks_requests"] == 1
    assert verifier.metrics()["issuers"][0]["fetches"]["manual"] == 1
    verifier.run_due_refreshes()  # nothing due: no fetch
    assert issuer.stats()["jwks_requests"] == 1


def test_the_gil_is_released_during_a_fetch(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    """While one thread waits on a slow JWKS fetch, this thread keeps running Python."""
    issuer.reset_stats()
    issuer.fault("delay", delay_ms=3000)
    try:
        fetcher = threading.Thread(target=verifier.refresh_issuer, args=(issuer.url,))
        fetcher.start()
        seen_in_flight = False
        while fetcher.is_alive():
            # This HTTP call needs the GIL; it can only happen while the
            # fetch is in flight if the fetching thread released it.
            if issuer.stats()["jwks_requests"] >= 1 and fetcher.is_alive():
                seen_in_flight = True
                break
            time.sleep(0.01)
        fetcher.join()
        assert seen_in_flight, "the fetch finished before this thread could run: was the GIL held?"
    finally:
        issuer.fault("none")
