"""Who may read and change which shop's issues: shop-scoped API tokens.

A token is never logged; ``Access.label`` names it in an issue's history by a short hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable


class AccessDenied(Exception):
    """401: no token, or a token that is not configured."""


class Access:
    """Shop-scoped API tokens. A token is never logged; ``label`` is a short hash to name it in history."""

    def __init__(self, tokens: dict[str, list[str]]) -> None:
        self._tokens = dict(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def shops_for(self, token: str | None) -> list[str] | None:
        """The shops this token may read and change (``["*"]`` = all), or None if it is not valid."""
        if not token:
            return None
        found = None
        given = token.encode("utf-8", "replace")  # (a header's undecodable bytes reach here as surrogates)
        for known, shops in self._tokens.items():
            # Compare against every token in constant time: no early exit that times the match.
            if hmac.compare_digest(known.encode(), given):
                found = shops
        return found

    def read_scope(self, token: str | None) -> list[str]:
        """Reads are open when no tokens are configured (a developer's loopback); otherwise token-scoped."""
        if not self.enabled:
            return ["*"]
        shops = self.shops_for(token)
        if shops is None:
            raise AccessDenied("a valid API token is required (Authorization: Bearer <token>)")
        return shops

    def write_scope(self, token: str | None) -> list[str]:
        if not self.enabled:
            raise AccessDenied("write access needs an API token; none is configured (set PARCELWATCH_TOKENS)")
        shops = self.shops_for(token)
        if shops is None:
            raise AccessDenied("a valid API token is required (Authorization: Bearer <token>)")
        return shops

    @staticmethod
    def label(token: str) -> str:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def visible_shops(scope: list[str], known: Iterable[str], requested: str | None) -> list[str]:
    """The shops a request reads: the requested one if the scope allows it, else all it allows."""
    allowed = set(known) if "*" in scope else set(scope)
    if requested:
        return [requested] if requested in allowed or "*" in scope else []
    return sorted(allowed)
