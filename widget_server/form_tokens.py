"""Signed, expiring form tokens: the form pages' integrity check instead of cookies
(third-party cookies are blocked inside the partner's iframe)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer


@dataclass(frozen=True)
class FormToken:
    kind: str
    target: str
    caller: str
    issued_at: float
    # The CV kept on the server across the form's error round trips (`kept_cvs`), or "".
    kept_cv: str = ""


class InvalidFormToken(Exception):
    pass


class FormTokens:
    def __init__(self, secret_key: str, ttl_seconds: int, min_fill_seconds: int) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="form-token")
        self.ttl_seconds = ttl_seconds
        self.min_fill_seconds = min_fill_seconds

    def issue(
        self, kind: str, target: str, caller: str, now: float | None = None, *, kept_cv: str = ""
    ) -> str:
        return self._serializer.dumps([kind, target, caller, round(now or time.time(), 3), kept_cv])

    def read(self, token: str, now: float | None = None) -> FormToken:
        """Raises InvalidFormToken when forged, for another form, or expired."""
        try:
            # Tokens issued before kept CVs have no fifth item.
            kind, target, caller, issued, *rest = self._serializer.loads(token)
            issued = float(issued)
        except (BadSignature, ValueError, TypeError) as exc:
            raise InvalidFormToken("bad signature") from exc
        if (now or time.time()) - issued > self.ttl_seconds:
            raise InvalidFormToken("expired")
        return FormToken(str(kind), str(target), str(caller), issued, str(rest[0]) if rest else "")

    def filled_too_fast(self, token: FormToken, now: float | None = None) -> bool:
        return (now or time.time()) - token.issued_at < self.min_fill_seconds
