"""`emails.write` writes messages itself (#11: building an `EmailMessage` was half
of a submission's time). What it writes must read, in any mail reader, exactly as
what `EmailMessage` with the SMTP policy wrote before: same headers once
decoded, same text and HTML, no defect, 7 bit, CRLF, one header per header."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from widget_server import emails
from widget_server.emails import SMTP_POLICY, EmailRefused, Rendered, header_text, write

DATE = dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.UTC)
MESSAGE_ID = "<177.1.2@widget.example>"


def reference(rendered: Rendered, sender: Address, to: Address, reply_to: Address, slot: bool) -> bytes:
    """How `compose` built the message before (the stdlib's email package)."""
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = to
    message["Reply-To"] = reply_to
    message["Date"] = format_datetime(DATE)
    message["Message-ID"] = MESSAGE_ID
    message["In-Reply-To"] = message["References"] = "<first@widget.example>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-LBA-Template"] = "candidature_pro"
    message["List-Unsubscribe"] = "<https://widget.example/optout/abc>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    if slot:
        message.make_mixed()
    return message.as_bytes(policy=SMTP_POLICY)


def written(rendered: Rendered, sender: Address, to: Address, reply_to: Address, slot: bool) -> bytes:
    return write(
        rendered,
        sender=sender,
        to=to,
        reply_to=reply_to,
        date=DATE,
        message_id=MESSAGE_ID,
        in_reply_to="<first@widget.example>",
        template="candidature_pro",
        unsubscribe_url="https://widget.example/optout/abc",
        attachment_slot=slot,
    )


def read(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def assert_reads_the_same(data: bytes, expected: bytes) -> None:
    ours, theirs = read(data), read(expected)
    assert [name for name, _ in ours.items()] == [name for name, _ in theirs.items()]
    for name, value in theirs.items():
        if name == "Content-Type":  # boundaries are random
            assert ours.get_content_type() == theirs.get_content_type()
        elif name in ("From", "To", "Reply-To"):
            # A long name takes several encoded words, and the email package reads
            # a space between two of them in an address (both writers split it).
            assert "".join(str(ours[name]).split()) == "".join(str(value).split()), name
        else:
            assert str(ours[name]) == str(value), name
    for kind in ("plain", "html"):
        ours_part, their_part = ours.get_body((kind,)), theirs.get_body((kind,))
        assert ours_part is not None and their_part is not None
        assert ours_part.get_content() == their_part.get_content()
    assert [p.get_content_type() for p in ours.walk()] == [p.get_content_type() for p in theirs.walk()]
    assert all(not part.defects for part in ours.walk())
    for line in data.split(b"\r\n"):
        assert line.isascii() and len(line) <= 998 and b"\r" not in line and b"\n" not in line


# Text UTF-8 can carry (no lone surrogate): what the templates render.
NAMES = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60).map(header_text)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=400)


@settings(max_examples=150, deadline=None)
@given(subject=NAMES, name=NAMES, text=TEXT, html=TEXT, slot=st.booleans())
@example(
    subject="Léa Moreau candidate à « Vendeur·se en boulangerie-pâtisserie » (offre LBA-2026-01007) " * 2,
    name='Moreau, "Léa" (candidate)',
    text="Bonjour,\n\nligne = 1\n" + "é" * 200 + "\n.\nFrom the start\n",
    html='<p style="a:b">Ça marche&nbsp;!</p>\n',
    slot=True,
)
@example(subject="Plain ASCII subject", name="Jean Dupont", text="", html="x", slot=False)
def test_a_written_message_reads_as_the_email_package_wrote_it(
    subject: str, name: str, text: str, html: str, slot: bool
) -> None:
    if not subject.strip() or not name.strip():
        return
    rendered = Rendered(subject, html, text)
    sender = Address("La bonne alternance", "noreply", "widget.example")
    to = Address(name, "rh", "entreprise.example")
    reply_to = Address(name, "lea.moreau", "example.org")
    assert_reads_the_same(
        written(rendered, sender, to, reply_to, slot), reference(rendered, sender, to, reply_to, slot)
    )


def test_the_attachment_goes_into_the_slot_of_a_written_message() -> None:
    rendered = Rendered("Candidature", "<p>Bonjour</p>", "Bonjour")
    to = Address("Recruteur", "rh", "entreprise.example")
    data = written(rendered, to, to, to, True)
    message = read(emails.with_attachment(data, "cv.pdf", "application/pdf", b"%PDF-1.4 cv"))
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "cv.pdf" and attachment.get_content() == b"%PDF-1.4 cv"
    assert message.get_content_type() == "multipart/mixed"
    assert message.get_body(("plain",)) is not None


@pytest.mark.parametrize("value", ["a\r\nBcc: x@evil.example", "a\nb", "a\rb"])
def test_a_header_that_would_not_stay_one_header_is_refused(value: str) -> None:
    # header_text removes these from names and subjects first; the writer checks again.
    with pytest.raises(EmailRefused):
        emails._header("Subject", value)


def test_the_message_id_is_read_back_from_the_written_bytes() -> None:
    rendered = Rendered("Candidature", "<p>Bonjour</p>", "Bonjour")
    to = Address("Recruteur", "rh", "entreprise.example")
    outgoing = emails.Outgoing(written(rendered, to, to, to, False), "noreply@widget.example", ("rh@x.fr",))
    assert outgoing.message_id == MESSAGE_ID
