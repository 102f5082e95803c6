"""Every kind of email the service sends, produced the way the service produces
it (requests posted through the API, answers and opt-outs through their pages,
reminders by their job, a bounce through its webhook, a withdrawal through the
follow-up page) and read back from the
outbox as stored: for the checks that hold for every email (SpamAssassin, the
<h1>, the privacy link)."""

from __future__ import annotations

import datetime as dt
import html
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from starlette.testclient import TestClient

from tests import seed
from tests.support import application, appointment, body, deliver, form_fields, path
from widget_server import reminders, tables

#: The kinds that go to a candidate; the others go to a recruiter or a CFA.
TO_CANDIDATE = (
    "candidature_ack",
    "rdv_ack",
    "answer_accept",
    "answer_filled",
    "answer_refuse",
    "answer_reply",
    "answer_unreachable",
    "delivery_failed",
)


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def html_links(message: EmailMessage) -> list[str]:
    return [html.unescape(u) for u in re.findall(r'href="([^"]+)"', body(message, "html"))]


def _outbox(client: TestClient) -> list[dict[str, Any]]:
    return seed.fetch_all(client, tables.outbox.select().order_by(tables.outbox.c.id))


def _answer(client: TestClient, pro: bytes, action: str, **changes: Any) -> None:
    """Answers with the `action` button of the pro email `pro`, as a recruiter would."""
    url = next(
        u
        for u in html_links(parse(pro))
        if "/reply/" in u and f'value="{action}" checked' in client.get(path(u)).text
    )
    fields = {**form_fields(client.get(path(url)).text), **changes}
    assert client.post(path(url), data=fields).status_code == 200


def _ack_of(client: TestClient, pro: bytes) -> bytes:
    """The acknowledgement queued with the pro email `pro`."""
    rows = _outbox(client)
    [request_id] = [r["request_id"] for r in rows if bytes(r["raw"]) == pro]
    [ack] = [
        bytes(r["raw"]) for r in rows if r["request_id"] == request_id and r["template"].endswith("_ack")
    ]
    return ack


def _offer_filled(client: TestClient, pro: bytes) -> None:
    """Declares the offer filled from the link of the pro email `pro`, as a recruiter would."""
    url = next(path(u) for u in html_links(parse(pro)) if "/filled/" in u)
    check = re.findall(r'name="check" value="([^"]+)"', client.get(url).text)[0]
    assert client.post(url, data={"check": check}).status_code == 200


def every_kind(client: TestClient) -> dict[str, bytes]:
    """{kind: the message as the outbox stores it}, the first of each kind (the
    outbox's template name; the spontaneous application's pro email as
    `candidature_pro_spontaneous`). `client`: started, on a fresh database,
    sending to an SMTP server (the reminder follows a delivered email)."""
    seed.offer(client)
    seed.company(client)
    seed.formation(client)
    partner = {"Authorization": f"Bearer {seed.api_key(client)}"}
    operator = {"Authorization": f"Bearer {seed.api_key(client, 'postmaster', 'operator')}"}
    found: dict[str, bytes] = {}

    def queued_by(do: Any, *args: Any, **kwargs: Any) -> list[bytes]:
        before = len(_outbox(client))
        do(*args, **kwargs)
        rows = _outbox(client)[before:]
        for row in rows:
            found.setdefault(str(row["template"]), bytes(row["raw"]))
        return [bytes(row["raw"]) for row in rows]

    def submit(url: str, request: dict[str, Any]) -> bytes:
        def post() -> None:
            response = client.post(url, json=request, headers=partner)
            assert response.status_code == 202, response.text

        return queued_by(post)[0]  # the pro email is queued first

    offer_pro = submit("/api/v1/applications", application())
    queued_by(_answer, client, offer_pro, "accept", pro_phone="04 72 00 00 00")
    spontaneous = submit(
        "/api/v1/applications",
        application(offer_id=None, siret=seed.SIRET, email="tom.petit@example.org", message=None),
    )
    found["candidature_pro_spontaneous"] = spontaneous
    queued_by(_answer, client, spontaneous, "refuse", reasons=["competences", "contrat"])
    queued_by(
        client.post,
        path(str(parse(spontaneous)["List-Unsubscribe"]).strip("<>")),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    rdv_pro = submit("/api/v1/appointment-requests", appointment())
    message = "Bonjour Yanis,\n\nIl reste 3 places en septembre.\n\nÀ bientôt,\nLe CFA"
    queued_by(_answer, client, rdv_pro, "reply", message_reply=message)
    unreachable = submit("/api/v1/appointment-requests", appointment(email="zoe@example.org", message=None))
    queued_by(_answer, client, unreachable, "unreachable")
    submit("/api/v1/appointment-requests", appointment(email="ines@example.org", role="parent"))
    withdrawn = submit("/api/v1/applications", application(email="noe.martin@example.org"))
    deliver(client)
    # The candidate withdraws from their follow-up page: the recruiter gets the notice.
    [followup] = [u for u in html_links(parse(_ack_of(client, withdrawn))) if "/suivi/" in u]
    check = re.search(r'name="check" value="([^"]+)"', client.get(path(followup) + "/retirer").text)
    assert check
    queued_by(client.post, path(followup) + "/retirer", data={"check": check.group(1)})
    state = seed.state(client)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=state.settings.reminder_days + 1)
    queued_by(seed.run, client, reminders.send_due_reminders, state.database, state.settings, later)
    bounce = {"bounces": [{"email": "rdv@cfa-commerce.example", "reason": "5.1.1"}]}
    queued_by(client.post, "/api/v1/bounces", json=bounce, headers=operator)
    # Last: it closes the offer.
    filled = submit("/api/v1/applications", application(email="noa.petit@example.org", first_name="Noa"))
    queued_by(_offer_filled, client, filled)
    return found
