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
    # Where the page is shown (`forms._frame_params`, checked when signed): the
    # widget's embed id and its host's origin, or the page a plain link came from.
    embed: str = ""
    origin: str = ""
    back: str = ""


class InvalidFormToken(Exception):
    def __init__(self, reason: str, expired: FormToken | None = None) -> None:
        super().__init__(reason)
        # A genuine token past its time: what it signed still tells where the page is shown.
        self.expired = expired


class FormTokens:
    def __init__(self, secret_key: str, ttl_seconds: int, min_fill_seconds: int) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt="form-token")
        self.ttl_seconds = ttl_seconds
        self.min_fill_seconds = min_fill_seconds

    def issue(
        self,
        kind: str,
        target: str,
        caller: str,
        now: float | None = None,
        *,
        kept_cv: str = "",
        embed: str = "",
        origin: str = "",
        back: str = "",
    ) -> str:
        issued = round(now or time.time(), 3)
        return self._serializer.dumps([kind, target, caller, issued, kept_cv, embed, origin, back])

    def read(self, token: str, now: float | None = None) -> FormToken:
        """Raises InvalidFormToken when forged, for another form, or expired
        (then with the token's signed content in `expired`)."""
        try:
            # Tokens issued before kept CVs have no fifth item, before the frame no sixth to eighth.
            kind, target, caller, issued, *rest = self._serializer.loads(token)
            issued = float(issued)
            extra = [str(item) for item in rest[:4]] + [""] * (4 - len(rest[:4]))
        except (BadSignature, ValueError, TypeError) as exc:
            raise InvalidFormToken("bad signature") from exc
        read = FormToken(str(kind), str(target), str(caller), issued, *extra)
        if (now or time.time()) - issued > self.ttl_seconds:
            raise InvalidFormToken("expired", expired=read)
        return read

    def filled_too_fast(self, token: FormToken, now: float | None = None) -> bool:
        return (now or time.time()) - token.issued_at < self.min_fill_seconds
