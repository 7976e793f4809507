"""Key lifecycle against a real JWKS endpoint: rotation, unknown kid,
outage (last known good), staleness."""

from __future__ import annotations

import uuid
from typing import Callable

import jwt
import pytest

import jwtwarden
from conftest import Issuer, wait_for


def test_rotation_picks_up_a_new_key_with_one_fetch(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        old = iss.mint()
        assert v.verify(old)["sub"] == "user"

        new_kid = iss.add_key("ES256")
        iss.reset_stats()
        new = iss.mint(new_kid)
        result = v.verify_full(new)
        assert result.kid == new_kid and result.alg == "ES256"
        assert iss.stats()["jwks_requests"] == 1
        assert v.metrics()["issuers"][0]["fetches"]["unknown_kid"] == 1

        # The old key is still published: its tokens still verify, no fetch.
        assert v.verify(iss.mint(iss.kid))["sub"] == "user"

        # Retire the old key. Once the verifier has seen the new set, the old
        # key no longer verifies anything, cached results included.
        iss.retire(iss.kid)
        v.refresh_issuer(iss.url)
        with pytest.raises(jwtwarden.UnknownKidError):
            v.verify(old)
        assert v.verify(new)["sub"] == "user"


def test_unknown_kid_fetches_exactly_once(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        key, alg = iss.private_key(iss.kid)
        iss.reset_stats()
        bogus = [jwt.encode(iss.claims(), key, algorithm=alg, headers={"kid": f"nope-{i}"}) for i in range(20)]
        for token in bogus:
            with pytest.raises(jwtwarden.UnknownKidError) as e:
                v.verify(token)
            assert e.value.code == 201
        # One refresh for the first unknown kid; the rest are inside the
        # cooldown and cost a lookup, not a fetch.
        assert iss.stats()["jwks_requests"] == 1
        stats = v.metrics()["issuers"][0]
        assert stats["fetches"]["unknown_kid"] == 1
        assert stats["unknown_kid"] == 20


def test_unknown_kid_that_then_appears_within_cooldown_needs_a_manual_refresh(
    new_issuer: Callable[..., Issuer],
) -> None:
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        with pytest.raises(jwtwarden.UnknownKidError):
            v.verify(iss.mint(headers={"kid": "k-" + uuid.uuid4().hex[:8]}))
        new_kid = iss.add_key("RS256")
        token = iss.mint(new_kid)
        with pytest.raises(jwtwarden.UnknownKidError):
            v.verify(token)  # rate limited: fails closed
        v.refresh_issuer(iss.url)
        assert v.verify(token)["sub"] == "user"


def test_outage_serves_last_known_good_keys(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    iss.headers(cache_control=None)
    config = iss.config(refresh={"default_ttl_secs": 1, "min_ttl_secs": 1, "backoff_max_secs": 1})
    with jwtwarden.Verifier(config) as v:
        token = iss.mint()
        assert v.verify(token)["sub"] == "user"
        iss.fault("status", status=503)
        with pytest.raises(jwtwarden.NoUsableKeysError):
            v.refresh_issuer(iss.url)
        # Past its TTL, refreshes failing: the keyset is stale but still served.
        wait_for(lambda: v.issuer_health(iss.url) == "stale", "health to become stale")
        assert v.verify(token, fresh=True)["sub"] == "user"
        assert v.verify(iss.mint())["sub"] == "user"
        assert v.metrics()["issuers"][0]["fetch_failures"] >= 1

        iss.fault("none")
        v.refresh_issuer(iss.url)
        # TTL 1 s: polled, so a stall of a loaded machine between the two
        # calls cannot read "stale".
        wait_for(lambda: v.issuer_health(iss.url) == "fresh", "health to become fresh")


def test_past_max_stale_fails_closed(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    iss.headers(cache_control=None)
    refresh = {"default_ttl_secs": 1, "min_ttl_secs": 1, "max_stale_secs": 1, "backoff_max_secs": 1}
    with jwtwarden.Verifier(iss.config(refresh=refresh)) as v:
        token = iss.mint()
        v.verify(token)
        iss.fault("drop")
        wait_for(lambda: v.issuer_health(iss.url) == "failed_closed", "the issuer to fail closed")
        with pytest.raises(jwtwarden.KeysStaleError) as e:
            v.verify(token)  # the cached result is not served either
        assert (e.value.code, e.value.category) == (401, "keys_unavailable")
        assert isinstance(e.value, jwtwarden.KeysUnavailableError)

        iss.fault("none")
        v.refresh_issuer(iss.url)
        assert v.verify(token)["sub"] == "user"


def test_unreachable_issuer_at_start(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    iss.fault("status", status=500)
    with jwtwarden.Verifier(iss.config()) as v:  # construction does not fail
        assert v.issuer_health(iss.url) == "failed_closed"
        with pytest.raises(jwtwarden.NoUsableKeysError) as e:
            v.verify(iss.mint())
        assert e.value.code == 400
        iss.fault("none")
        v.refresh_issuer(iss.url)
        assert v.verify(iss.mint())["sub"] == "user"
