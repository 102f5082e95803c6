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
from collections.abc import Iterator
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
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Verdict]]:
    tmp_path = tmp_path_factory.mktemp("spamassassin")
    with running_smtp_server() as smtp, smtp_client(tmp_path, smtp) as client:
        kinds = every_kind(client)
    # One process each, side by side: SpamAssassin spends its time starting up.
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(lambda raw: spamassassin(raw, tmp_path), kinds.values())
        yield dict(zip(kinds, results, strict=True))


KINDS = (
    "candidature_pro",
    "candidature_pro_spontaneous",
    "rdv_pro",
    "reminder",
    "candidature_ack",
    "rdv_ack",
    "answer_accept",
    "answer_refuse",
    "answer_reply",
    "answer_unreachable",
    "delivery_failed",
    "optout_confirmed",
    "withdrawn",
)


def test_every_kind_of_email_is_scored(verdicts: dict[str, Verdict]) -> None:
    # A kind added to email_kinds (a new template: see test_email_layout) is scored here too.
    assert sorted(verdicts) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_the_email_scores_at_most_zero(verdicts: dict[str, Verdict], kind: str) -> None:
    verdict = verdicts[kind]
    assert verdict.score <= 0, f"{kind}: {verdict.score} points, rules {verdict.rules}\n{verdict.report}"


def test_the_preheader_is_not_low_contrast_text(verdicts: dict[str, Verdict]) -> None:
    # The rule MJML's own preview text trips (white 1px text on a light background).
    assert [k for k, v in verdicts.items() if "HTML_FONT_LOW_CONTRAST" in v.rules] == []
