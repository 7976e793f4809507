"""IETF Token Status Lists through the Python package: statuses become
exception classes, and a status flipped at the issuer reaches cached results."""

from __future__ import annotations

from typing import Any, Callable

import pytest

import jwtwarden
from conftest import Issuer, wait_for


def _status(iss: Issuer, path: str, idx: int) -> dict[str, Any]:
    return {"status_list": {"idx": idx, "uri": iss.url + path}}


def test_statuses_raise_their_classes(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("ES256")
    iss.admin("POST", "/status_lists", {"path": "/status/1", "bits": 2, "len": 64, "ttl": 1})
    for idx, status in [(1, 1), (2, 2), (3, 3)]:
        iss.admin("POST", "/status", {"path": "/status/1", "idx": idx, "status": status})
    config = iss.config(status_list={"allowed_uris": [iss.url + "/status"], "min_ttl_secs": 1})
    with jwtwarden.Verifier(config) as v:
        token = iss.mint(status=_status(iss, "/status/1", 0))
        assert v.verify(token)["sub"] == "user"
        with pytest.raises(jwtwarden.RevokedTokenError):
            v.verify(iss.mint(status=_status(iss, "/status/1", 1)))
        with pytest.raises(jwtwarden.SuspendedTokenError) as e:
            v.verify(iss.mint(status=_status(iss, "/status/1", 2)))
        assert (e.value.code, e.value.kind, e.value.category) == (310, "suspended", "policy")
        assert isinstance(e.value, jwtwarden.PolicyError)
        with pytest.raises(jwtwarden.StatusNotValidError):
            v.verify(iss.mint(status=_status(iss, "/status/1", 3)))
        with pytest.raises(jwtwarden.StatusIndexOutOfRangeError):
            v.verify(iss.mint(status=_status(iss, "/status/1", 64)))
        def listed() -> dict[str, Any]:
            (entry,) = [l for l in v.metrics()["status_lists"] if l["uri"] == iss.url + "/status/1"]
            return entry

        assert (listed()["entries"], listed()["bits"], listed()["rejected"]) == (64, 2, 4)
        # ttl 1 s: on a loaded machine the background refresh may come late.
        wait_for(lambda: listed()["health"] == "fresh", "the list to read fresh")
        assert "jwtwarden_status_list_fetches_total{" in v.prometheus()

        # Suspended at the issuer: the cached result stops being served once
        # the background refresher has the new list (ttl 1 s).
        assert v.verify(token)["sub"] == "user"
        iss.admin("POST", "/status", {"path": "/status/1", "idx": 0, "status": 2})

        def suspended() -> bool:
            try:
                v.verify(token)
            except jwtwarden.SuspendedTokenError:
                return True
            return False

        wait_for(suspended, "the suspension to reach the verifier")


def test_a_list_outside_the_allowlist_is_not_fetched(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    iss.admin("POST", "/status_lists", {"path": "/elsewhere/1", "bits": 1, "len": 8})
    with jwtwarden.Verifier(iss.config(status_list={"allowed_uris": [iss.url + "/status"]})) as v:
        with pytest.raises(jwtwarden.StatusUriNotAllowedError) as e:
            v.verify(iss.mint(status=_status(iss, "/elsewhere/1", 0)))
        assert e.value.code == 311
    assert iss.stats()["paths"].get("/elsewhere/1", 0) == 0


def test_an_unreachable_list_is_keys_unavailable(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config(status_list={"allowed_uris": [iss.url + "/status"]})) as v:
        with pytest.raises(jwtwarden.StatusListUnavailableError) as e:
            v.verify(iss.mint(status=_status(iss, "/status/missing", 0)))
        assert (e.value.code, e.value.category) == (403, "keys_unavailable")
        assert isinstance(e.value, jwtwarden.KeysUnavailableError)
