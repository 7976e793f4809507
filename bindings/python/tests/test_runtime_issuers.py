"""Issuers added, removed and replaced at runtime (issue 27).

A removed issuer's cached token is refused on the next call; an issuer whose
configuration did not change keeps its cached result across ``reload``;
validation is the constructor's.
"""

from __future__ import annotations

import json
from typing import Callable

import pytest

import jwtwarden
from conftest import Issuer


def test_add_remove_reload(new_issuer: Callable[..., Issuer]) -> None:
    a, b = new_issuer(), new_issuer()
    entry_a = a.config()["issuers"][0]
    entry_b = b.config()["issuers"][0]
    with jwtwarden.Verifier(a.config()) as v:
        ta, tb = a.mint(), b.mint()
        v.verify(ta)
        assert v.verify_full(ta).cached
        with pytest.raises(jwtwarden.UnknownIssuerError):
            v.verify(tb)

        with pytest.raises(jwtwarden.InvalidConfigError, match=r"issuers\[1\]"):
            v.add_issuer({**entry_b, "audiences": []})
        with pytest.raises(jwtwarden.InvalidConfigError):
            v.add_issuer(entry_a)  # a duplicate
        with pytest.raises(TypeError):
            v.add_issuer(42)  # type: ignore[arg-type]
        v.add_issuer(json.dumps(entry_b))
        v.verify(tb)
        assert v.verify_full(tb).cached

        v.remove_issuer(a.url)
        with pytest.raises(jwtwarden.UnknownIssuerError):
            v.verify(ta)  # was a cache hit
        assert v.verify_full(tb).cached
        with pytest.raises(jwtwarden.UnknownIssuerError):
            v.remove_issuer(a.url)

        both = {"issuers": [entry_b, entry_a], "http": {"allow_http": True}}
        v.reload(both)
        assert v.verify_full(tb).cached
        v.verify(ta)
        with pytest.raises(jwtwarden.InvalidConfigError, match="cache"):
            v.reload({**both, "cache": {"capacity": 7}})
        assert v.verify_full(ta).cached
        assert v.issuers() == [b.url, a.url]
