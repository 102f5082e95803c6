"""The tokens of the links in emails: nothing a spam filter reads as something else."""

from __future__ import annotations

import base64
import re

from hypothesis import example, given
from hypothesis import strategies as st

from widget_server.reply_tokens import token_text

# SpamAssassin's `__BITCOIN_ID` body rule (72_active.cf), as Debian ships it.
BITCOIN_ID = re.compile(
    r"\b(?<!=)(?:[13](?:(?:[-_=\s][a-km-zA-HJ-NP-Z1-9]){29,34}|[a-km-zA-HJ-NP-Z1-9]{29,34})"
    r"|bc1[acdefghjklmnpqrstuvwxyz234567890]{30,90}"
    r"|b[-_=\s]c[-_=\s]1(?:[-_=\s][acdefghjklmnpqrstuvwxyz234567890]){30,90})\b"
)


@given(st.binary(min_size=24, max_size=24))
# Bytes whose URL-safe base64 is a run of base58 characters after a "-" and a "1".
@example(base64.urlsafe_b64decode("A-1" + "2" * 29))
@example(base64.urlsafe_b64decode("1" * 32))
def test_a_link_token_never_reads_as_a_bitcoin_address(raw: bytes) -> None:
    link = f"https://candidature.example/reply/{token_text(raw)}"
    assert BITCOIN_ID.search(link) is None
    # Text parts wrap long lines: a token alone on its line neither.
    assert BITCOIN_ID.search(f"\n{token_text(raw)}\n") is None
