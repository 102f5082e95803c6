"""Every kind of email scores at most 0 with SpamAssassin's local tests
(`spamassassin -L -t`, no network), as the outbox stores it: an email that a
filter holds back is an answer the candidate never reads.

CI runs as root and `scripts/test` installs SpamAssassin from Debian there; the
test is skipped only where the binary is absent and cannot be installed (a
developer machine without root)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.email_kinds import every_kind, parse
from tests.smtp_server import running as running_smtp_server
from tests.support import smtp_client

SPAMASSASSIN = shutil.which("spamassassin")

pytestmark = [
    pytest.mark.spamassassin,
    pytest.mark.skipif(
        SPAMASSASSIN is None and os.geteuid() != 0,
        reason="spamassassin is not installed (apt-get install spamassassin; scripts/test does it as root)",
    ),
]


@dataclass(frozen=True)
class Verdict:
    score: float
    rules: list[str]
    report: str


def spamassassin(raw: bytes, home: Path) -> Verdict:
    """`spamassassin -L -t` on one message: its score and the rules it hit."""
    assert SPAMASSASSIN, "spamassassin is missing: scripts/test installs it (apt-get install spamassassin)"
    # A HOME of its own: nothing learnt from one run (autolearn) changes the next.
    result = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=raw,
        capture_output=True,
        env={**os.environ, "HOME": str(home)},
        timeout=120,
        check=True,
    )
    status = " ".join(str(parse(result.stdout)["X-Spam-Status"]).split())
    match = re.search(r"score=(-?[\d.]+) .*?tests=(\S*)", status)
    assert match, status
    report = result.stdout.decode("utf-8", "replace").partition("Content analysis details:")[2]
    return Verdict(float(match.group(1)), [r for r in match.group(2).split(",") if r], report)


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Verdict]:
    tmp_path = tmp_path_factory.mktemp("spamassassin")
    with running_smtp_server() as smtp, smtp_client(tmp_path, smtp) as client:
        kinds = every_kind(client)
    # One process each, side by side: SpamAssassin spends its time starting up.
    with ThreadPoolExecutor(4) as pool:
        return dict(
            zip(kinds, pool.map(lambda raw: spamassassin(raw, tmp_path), kinds.values()), strict=True)
        )


def test_every_kind_of_email_scores_at_most_zero(verdicts: dict[str, Verdict]) -> None:
    # Every kind that tests/email_kinds.py produces, which test_email_layout checks
    # covers every template: a new kind of email is scored without a change here.
    assert {"candidature_pro", "rdv_pro", "candidature_ack", "answer_accept", "answer_refuse"} <= set(
        verdicts
    )
    over = {kind: v for kind, v in verdicts.items() if v.score > 0}
    assert not over, "\n".join(f"{k}: {v.score} points, rules {v.rules}\n{v.report}" for k, v in over.items())


def test_the_preheader_is_not_low_contrast_text(verdicts: dict[str, Verdict]) -> None:
    # The rule MJML's own preview text trips (white 1px text on a light background).
    assert [k for k, v in verdicts.items() if "HTML_FONT_LOW_CONTRAST" in v.rules] == []
