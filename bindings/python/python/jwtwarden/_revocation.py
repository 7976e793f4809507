"""What a revocation reports and what a verifier holds (``Propagation``,
``Revocation``); both are exported from :mod:`jwtwarden`."""

from __future__ import annotations

import enum
from typing import Literal, Optional, TypedDict

__all__ = ["ANY_ISSUER", "Propagation", "Revocation"]

#: The issuer scope that covers every configured issuer: a ``jti`` or ``sub``
#: is unique only within its issuer, so every revocation names one, or this.
ANY_ISSUER = "*"


class Propagation(str, enum.Enum):
    """How far a revocation has reached when ``revoke_*`` returns.

    In every case it is already in force for every thread of this process
    (and journaled, with ``state_dir``). A ``str``, so it compares equal to its
    value (``Propagation.LOCAL == "local"``).
    """

    #: No fleet feed (``revocation.redis``) is configured: this process only.
    LOCAL = "local"
    #: Written to the fleet's Redis and published to every process.
    FLEET = "fleet"
    #: A fleet feed is configured but Redis was unreachable: **not yet
    #: fleet-wide**. It is published in the background once Redis is back.
    PENDING = "pending"

    def __str__(self) -> str:
        return self.value


class Revocation(TypedDict):
    """One revocation held by a verifier, as ``Verifier.revocations()`` lists it."""

    #: What it covers: a ``jti``, a subject before a time, or a key id.
    kind: Literal["jti", "subject", "kid"]
    #: The issuer, exactly as configured, or ``"*"`` for every issuer.
    issuer: str
    #: The ``jti``, subject or kid.
    value: str
    #: Subject revocations: tokens issued before this time (Unix seconds).
    issued_before: Optional[int]
    #: When the record may be forgotten (Unix ms); for kids
    #: ``revocation.kid_revocation_secs`` after the revocation (``None`` only
    #: for kid records written by older versions).
    until_ms: Optional[int]
