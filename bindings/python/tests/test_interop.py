"""Tokens minted by an independent implementation (PyJWT + cryptography) with
the issuer's private keys, verified against its JWKS served over HTTP."""

from __future__ import annotations

import jwt
import pytest

import jwtwarden
from conftest import Issuer, tamper_payload

ALGS = ["RS256", "PS256", "ES256", "EdDSA"]


def kid_for(issuer: Issuer, alg: str) -> str:
    for kid in issuer.published():
        if issuer.private_key(kid)[1] == alg:
            return kid
    raise AssertionError(f"no {alg} key published")


@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_token_verifies(issuer: Issuer, verifier: jwtwarden.Verifier, alg: str) -> None:
    kid = kid_for(issuer, alg)
    token = issuer.mint(kid, sub=f"user-{alg}")
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": kid, "typ": "JWT"}
    result = verifier.verify_full(token)
    assert result.alg == alg
    assert result.kid == kid
    assert result.claims["sub"] == f"user-{alg}"
    assert not result.cached
    assert verifier.verify_full(token).cached


@pytest.mark.parametrize("alg", ALGS)
def test_tampered_payload_is_rejected(issuer: Issuer, verifier: jwtwarden.Verifier, alg: str) -> None:
    token = issuer.mint(kid_for(issuer, alg))
    verifier.verify(token)  # the original is good (and now cached)
    forged = tamper_payload(token, sub="admin")
    with pytest.raises(jwtwarden.InvalidSignatureError) as e:
        verifier.verify(forged)
    assert e.value.code == 200
    issuer.reset_stats()
    with pytest.raises(jwtwarden.InvalidSignatureError):
        verifier.verify(forged)
    assert issuer.stats()["jwks_requests"] == 0, "a bad signature under a known kid must not fetch"


@pytest.mark.parametrize("alg", ALGS)
def test_signature_of_another_key_is_rejected(issuer: Issuer, verifier: jwtwarden.Verifier, alg: str) -> None:
    """Signed with one key, labelled with another key's kid of the same alg."""
    kid = kid_for(issuer, alg)
    other = issuer.add_key(alg)
    try:
        key, _ = issuer.private_key(other)
        token = jwt.encode(issuer.claims(), key, algorithm=alg, headers={"kid": kid})
        with pytest.raises(jwtwarden.InvalidSignatureError):
            verifier.verify(token)
    finally:
        issuer.retire(other)


def test_issuer_minted_token_verifies_too(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.admin("POST", "/mint", {})["token"]
    assert verifier.verify(token)["aud"] == "api"
