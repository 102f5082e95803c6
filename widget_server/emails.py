"""Emails: Jinja2 renders the MJML and text templates of `templates/emails/`,
mjml-python turns MJML into HTML, and `compose` builds an `Outgoing` email: the
message and its envelope, fixed once, here.

Each email `NAME` has `NAME.mjml` (HTML part) and `NAME.txt` (plain-text part,
whose first line is `Subject: …`). Every MJML template extends `_layout.mjml`
(preheader, footer with the privacy link) and writes its headline with
`{% call heading() %}…{% endcall %}` (`_macros.mjml`): the email's one `<h1>`.

No header can be injected, in three layers: the fields that reach a header are
checked on input (`validation`); names and subjects are made one line and
RFC 2047 markers neutralised here (directory data is not checked like a form);
and the bytes are generated with a policy that refuses any header that would
not come out as exactly one header. The envelope (sender, recipients) is fixed
here and stored beside the bytes: nothing ever reads recipients back from
headers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlsplit

import jinja2
from mjml import mjml2html

from .bundled import data_dir
from .local_time import date_fr
from .problems import Problem
from .settings import Settings
from .validation import display_phone, unsafe_char

EMAILS_DIR = data_dir("emails")


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(EMAILS_DIR),
        autoescape=jinja2.select_autoescape(["mjml", "html"], default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates ship with the package: no stat() of each one at every email.
        auto_reload=False,
    )
    env.filters["phone"] = display_phone
    env.filters["date_fr"] = date_fr
    env.filters["join_fr"] = join_fr
    # The macros of `_macros.mjml`, callable from every template without an import line.
    macros = env.get_template("_macros.mjml").module
    env.globals.update(heading=macros.heading, quote=macros.quote)  # type: ignore[attr-defined]
    return env


def join_fr(items: list[str]) -> str:
    """`a`, `a et b`, `a, b et c`: a list as a French sentence says it."""
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} et {items[-1]}"


_ENV = _environment()


class EmailRefused(Problem):
    """What a person typed cannot go out as an email (it breaks the rendering, or a
    header would not stay one header): a 422 for them, never a 500, and nothing
    queued."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            422,
            "Votre texte contient des caractères que nous ne pouvons pas envoyer par e-mail : "
            "retirez les caractères spéciaux, puis renvoyez.",
            code="unsendable",
        )
        self.reason = reason


def render(name: str, context: dict[str, Any]) -> Rendered:
    text = _ENV.get_template(f"{name}.txt").render(context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"{name}.txt must start with 'Subject: '")
    subject = header_text(first.removeprefix("Subject: "))
    try:
        # mjml-python refuses some code points (U+FFFE, NUL…) and cannot encode
        # lone surrogates. Free text is cleaned before it comes here; whatever
        # still slips through ends as a 422, not a 500.
        html = str(mjml2html(_ENV.get_template(f"{name}.mjml").render(context), fonts={}))
    except (ValueError, UnicodeError) as exc:
        raise EmailRefused(f"{name}.mjml: {exc}") from exc
    return Rendered(subject, html, body.lstrip("\n"))


_ENCODED_WORD_MARKER = re.compile(r"=\?|\?=")


def header_text(value: str) -> str:
    """One line of text safe in a header, for names and subjects that come from
    the directory as well as from forms: line breaks become spaces; controls,
    format characters and noncharacters go; RFC 2047 markers are broken apart
    (the email package would decode `=?utf-8?q?=0D=0A…?=` into a raw line break
    when writing the header)."""
    text = "".join((" " if c.isspace() else "") if unsafe_char(c) else c for c in value)
    text = " ".join(text.split())
    while _ENCODED_WORD_MARKER.search(text):
        text = _ENCODED_WORD_MARKER.sub(lambda m: " ".join(m.group()), text)
    return text


def mail_from(settings: Settings) -> Address:
    name, addr = parseaddr(settings.mail_from)
    return address(name, addr)


def envelope_sender(settings: Settings) -> str:
    """The SMTP `MAIL FROM` of every email: the address of `MAIL_FROM`."""
    return parseaddr(settings.mail_from)[1]


def address(display_name: str, email: str) -> Address:
    local, _, domain = email.rpartition("@")
    return Address(display_name=header_text(display_name), username=local, domain=domain)


# --- generating the bytes --------------------------------------------------------


class _VerifyingPolicy(EmailPolicy):
    """`policy.SMTP` that refuses to write a header which would not come out as
    exactly one header: the equivalent of `verify_generated_headers` (Python
    3.11.10+, 3.12.5+), which this service's Python (3.11.7) lacks."""

    def fold(self, name: str, value: str) -> str:
        folded: str = super().fold(name, value)
        _verify_folded(name, folded.encode("utf-8", "surrogateescape"), self.linesep.encode())
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        folded = super().fold_binary(name, value)
        _verify_folded(name, folded, self.linesep.encode())
        return folded


def _verify_folded(name: str, folded: bytes, linesep: bytes) -> None:
    lines = folded.split(linesep)
    # One header: "Name: …" then only continuation lines (starting with blank
    # space), ending with the line separator, and no other CR or LF anywhere.
    if lines[-1] != b"" or not lines[0].lower().startswith(name.lower().encode() + b":"):
        raise EmailRefused(f"header {name} badly folded")
    for index, line in enumerate(lines[:-1]):
        if b"\r" in line or b"\n" in line or (index and not line.startswith((b" ", b"\t"))):
            raise EmailRefused(f"header {name} would not stay one header")


#: How every message is written: CRLF, 7 bit (any server takes it, so there is
#: never a reason to parse a queued message again), headers verified.
SMTP_POLICY = _VerifyingPolicy(linesep="\r\n", cte_type="7bit")

_ADDRESS = re.compile(r"^[^\s<>,;:\"\\()\[\]@]+@[^\s<>,;:\"\\()\[\]@]+$")


@dataclass(frozen=True)
class Outgoing:
    """A composed email and its envelope, fixed when it is composed: what the
    outbox stores and the transport sends, as they are. The message is the
    bytes `compose` wrote, or an `EmailMessage` built elsewhere."""

    message: EmailMessage | bytes
    sender: str
    recipients: tuple[str, ...]
    #: A CV is attached when sent (`with_attachment`), not stored twice.
    attachment_slot: bool = False

    @property
    def message_id(self) -> str:
        if isinstance(self.message, bytes):
            head = self.message.partition(b"\r\n\r\n")[0]
            found = re.search(rb"^Message-ID: *(\S+)", head, re.IGNORECASE | re.MULTILINE)
            return found.group(1).decode("ascii") if found else ""
        return str(self.message.get("Message-ID", "")).strip()

    def as_bytes(self) -> bytes:
        """The message as sent; raises `EmailRefused` for a header that would not
        stay one header or an envelope address that is not one plain address."""
        for envelope_address in (self.sender, *self.recipients):
            if not _ADDRESS.match(envelope_address):
                raise EmailRefused("envelope address is not one plain address")
        if not self.recipients:
            raise EmailRefused("no recipient")
        if isinstance(self.message, bytes):
            return self.message
        return self.message.as_bytes(policy=SMTP_POLICY)


def compose(
    settings: Settings,
    template: str,
    context: dict[str, Any],
    *,
    to: Address,
    reply_to: Address | None = None,
    in_reply_to: str | None = None,
    unsubscribe_url: str | None = None,
    attachment_slot: bool = False,
    now: dt.datetime | None = None,
) -> Outgoing:
    """Render `template` and build the message, with its Message-ID and envelope
    fixed now: the one recipient is `to`, whatever the headers say.
    `attachment_slot` makes room for a file attached when sent (the CV)."""
    context = {"operator_name": settings.operator_name, "public_url": settings.public_url, **context}
    rendered = render(template, context)
    message = write(
        rendered,
        sender=mail_from(settings),
        to=to,
        reply_to=reply_to,
        date=now or dt.datetime.now(dt.UTC),
        message_id=make_msgid(domain=urlsplit(settings.public_url).hostname or "localhost"),
        in_reply_to=in_reply_to,
        template=template,
        unsubscribe_url=unsubscribe_url,
        attachment_slot=attachment_slot,
    )
    return Outgoing(message, envelope_sender(settings), (to.addr_spec,), attachment_slot)


# --- writing the bytes ---------------------------------------------------------------
#
# `compose` writes its messages itself: building an `EmailMessage` (every header
# parsed into a structured object, then folded again when written) was half of
# a submission's time. What it writes is what `EmailMessage` with SMTP_POLICY
# wrote for these messages: headers in 7 bit (RFC 2047 encoded words for any
# other text), text parts in quoted-printable UTF-8, CRLF line ends; and every
# header goes through the same check, `_verify_folded`, before it is used.


_CRLF = "\r\n"


def write(
    rendered: Rendered,
    *,
    sender: Address,
    to: Address,
    reply_to: Address | None,
    date: dt.datetime,
    message_id: str,
    in_reply_to: str | None,
    template: str,
    unsubscribe_url: str | None,
    attachment_slot: bool,
) -> bytes:
    """The message's bytes: text and HTML alternatives, inside a multipart/mixed
    body when `attachment_slot` (`with_attachment` adds the file when sent)."""
    headers = [
        _header("Subject", rendered.subject),
        _header("From", _address(sender)),
        _header("To", _address(to)),
    ]
    if reply_to is not None:
        headers.append(_header("Reply-To", _address(reply_to)))
    headers += [_header("Date", format_datetime(date)), _header("Message-ID", message_id)]
    if in_reply_to:
        headers += [_header("In-Reply-To", in_reply_to), _header("References", in_reply_to)]
    headers += [
        b"Auto-Submitted: auto-generated\r\n",
        b"X-Auto-Response-Suppress: All\r\n",
        _header("X-LBA-Template", template),
    ]
    if unsubscribe_url:
        headers += [
            _header("List-Unsubscribe", f"<{unsubscribe_url}>"),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ]
    body = _multipart("alternative", [_text_part("plain", rendered.text), _text_part("html", rendered.html)])
    if attachment_slot:
        body = _multipart("mixed", [body])
    return b"".join(headers) + b"MIME-Version: 1.0\r\n" + body


def _header(name: str, value: str) -> bytes:
    """`Name: value` and CRLF, folded, in 7 bit; `EmailRefused` if it would not
    stay exactly one header."""
    if value.isascii() and len(value) <= 900:
        folded = f"{name}: {value}\r\n"
    else:
        try:
            folded = f"{name}: {_encoded(value)}\r\n"
        except UnicodeError as exc:
            raise EmailRefused(f"header {name}: {exc}") from exc
    data = folded.encode("ascii")
    _verify_folded(name, data, b"\r\n")
    return data


def _address(value: Address) -> str:
    """`Name <local@domain>`, the name quoted or encoded as it needs."""
    name, spec = value.display_name, value.addr_spec
    if not name:
        return spec
    if name.isascii():
        return formataddr((name, spec))
    return f"{_encoded(name)} <{spec}>"


# UTF-8 bytes per RFC 2047 encoded word: its base64 and `=?utf-8?b??=` fit in 75.
_WORD_BYTES = 45


def _encoded(text: str) -> str:
    """RFC 2047 encoded words, one per line. Each word carries its spaces inside
    (readers drop the blank space between two encoded words)."""
    words: list[bytes] = []
    word = b""
    for char in text:
        data = char.encode("utf-8")
        if len(word) + len(data) > _WORD_BYTES:
            words.append(word)
            word = b""
        word += data
    words.append(word)
    return _CRLF.join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words).replace(
        _CRLF, _CRLF + " "
    )


def _text_part(subtype: str, text: str) -> bytes:
    # Lines as the email package splits them (CR, LF or CRLF), CRLF-ended, then
    # quoted-printable by binascii (C; the email package's encoder is Python).
    try:
        data = b"\r\n".join(text.encode("utf-8").splitlines()) + b"\r\n"
    except UnicodeError as exc:
        raise EmailRefused(f"text/{subtype}: {exc}") from exc
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")
    return head + binascii.b2a_qp(data, istext=True)


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    # Never in a part: quoted-printable writes every "=" of the text as "=3D".
    boundary = f"==============={secrets.token_hex(10)}==".encode("ascii")
    delimiter = b"\r\n--" + boundary + b"\r\n"
    head = b'Content-Type: multipart/%s; boundary="%s"\r\n\r\n--%s\r\n' % (
        subtype.encode("ascii"),
        boundary,
        boundary,
    )
    return head + delimiter.join(parts) + b"\r\n--" + boundary + b"--\r\n"


def with_attachment(data: bytes, filename: str, content_type: str, content: bytes) -> bytes:
    """`data` (a message composed with `attachment_slot`, as queued) with a file
    added as its last part. The headers are not parsed again: the part goes in
    just before the closing boundary of the multipart/mixed body."""
    head, _, closing = data.rstrip(b"\r\n").rpartition(b"\r\n")
    if not (closing.startswith(b"--") and closing.endswith(b"--") and len(closing) > 4):
        raise ValueError("the message has no attachment slot")
    part = MIMEPart(policy=SMTP_POLICY)
    maintype, _, subtype = content_type.partition("/")
    part.set_content(
        content,
        maintype=maintype or "application",
        subtype=subtype or "octet-stream",
        filename=header_text(filename) or "piece-jointe",
    )
    delimiter = closing[:-2]
    return b"".join(
        (head, b"\r\n", delimiter, b"\r\n", part.as_bytes(policy=SMTP_POLICY), b"\r\n", closing, b"\r\n")
    )
