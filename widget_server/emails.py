"""Emails: Jinja2 renders the MJML and text templates of `templates/emails/`,
mjml-python turns MJML into HTML, and `compose` builds the message.

Each email `NAME` has `NAME.mjml` (HTML part) and `NAME.txt` (plain-text part,
whose first line is `Subject: …`). Messages are built from `Address` objects
only, so no header can be injected through a name or an address.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any
from urllib.parse import urlsplit

import jinja2
from mjml import mjml2html

from .bundled import data_dir
from .settings import Settings
from .validation import display_phone

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
    )
    env.filters["phone"] = display_phone
    env.filters["date_fr"] = date_fr
    return env


_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def date_fr(value: dt.date | dt.datetime) -> str:
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


_ENV = _environment()


def render(name: str, context: dict[str, Any]) -> Rendered:
    text = _ENV.get_template(f"{name}.txt").render(context)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject: "):
        raise ValueError(f"{name}.txt must start with 'Subject: '")
    subject = " ".join(first.removeprefix("Subject: ").split())
    html = str(mjml2html(_ENV.get_template(f"{name}.mjml").render(context), fonts={}))
    return Rendered(subject, html, body.lstrip("\n"))


def mail_from(settings: Settings) -> Address:
    name, addr = parseaddr(settings.mail_from)
    return address(name, addr)


def address(display_name: str, email: str) -> Address:
    local, _, domain = email.rpartition("@")
    return Address(display_name=" ".join(display_name.split()), username=local, domain=domain)


def compose(
    settings: Settings,
    template: str,
    context: dict[str, Any],
    *,
    to: Address,
    reply_to: Address | None = None,
    in_reply_to: str | None = None,
    unsubscribe_url: str | None = None,
    now: dt.datetime | None = None,
) -> EmailMessage:
    """Render `template` and build the message, with its Message-ID fixed now."""
    context = {"operator_name": settings.operator_name, "public_url": settings.public_url, **context}
    rendered = render(template, context)
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = mail_from(settings)
    message["To"] = to
    if reply_to is not None:
        message["Reply-To"] = reply_to
    message["Date"] = format_datetime(now or dt.datetime.now(dt.UTC))
    message["Message-ID"] = make_msgid(domain=urlsplit(settings.public_url).hostname or "localhost")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message["X-LBA-Template"] = template
    if unsubscribe_url:
        message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
