"""jwtwarden: fail-closed JWT verification against JWKS endpoints, with a
bounded verification cache.

::

    import jwtwarden

    verifier = jwtwarden.Verifier({
        "issuers": [{
            "issuer": "https://idp.example.com",
            "jwks_uri": "https://idp.example.com/.well-known/jwks.json",
            "audiences": ["orders-api"],
        }]
    })
    claims = verifier.verify(token)            # a read-only mapping, or raises JwtWardenError
    result = verifier.verify_full(token)       # .claims .issuer .kid .alg .cached .verified_at

The engine is Rust (the ``jwtwarden._native`` extension); it releases the GIL
while it verifies or fetches keys. Log records go to the ``logging`` logger
``jwtwarden``. See :mod:`jwtwarden.exceptions` for the error hierarchy and
:mod:`jwtwarden.wsgi` / :mod:`jwtwarden.asgi` for framework middleware.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping
from typing import Any

from . import _native
from ._native import CORE_VERSION, Inherited, Minter, VerifiedToken, Verifier, error_kinds, sync_log_level
from ._revocation import ANY_ISSUER, Propagation, Revocation
from . import exceptions as _exceptions
from .exceptions import *  # noqa: F403 (every exception, as listed in exceptions.__all__)

__version__: str = _native.__version__

__all__ = [
    "__version__",
    "CORE_VERSION",
    "Verifier",
    "VerifiedToken",
    "Inherited",
    "Minter",
    "ANY_ISSUER",
    "Propagation",
    "Revocation",
    "error_kinds",
    "sync_log_level",
    "thaw",
]
__all__ += _exceptions.__all__


def thaw(claims: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, mutable copy of verified claims: dicts and lists all the way
    down (``verify`` returns a read-only mapping, with tuples for arrays,
    shared by every cache hit of the token). The copy is the caller's own,
    and ``json.dumps`` accepts it."""
    return {k: _thaw(v) for k, v in claims.items()}


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value

_log = logging.getLogger("jwtwarden")
# A library adds no handler of its own; this only keeps Python 3's
# "last resort" handler from printing jwtwarden's warnings when the
# application has not configured logging.
_log.addHandler(logging.NullHandler())


def _after_fork_in_child() -> None:
    # Nothing to do but say so: the engine respawns its refresher on the
    # child's first verify, and the log bridge starts afresh by itself (both
    # with pthread_atfork handlers, so forks made from C are covered too).
    _log.debug("forked: child pid %d; the key refresher restarts on first use", os.getpid())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_native._shutdown_logging)
