"""The dev mailbox: the emails the service would have sent, when `SMTP_URL` is unset.

Pages at `/dev/mailbox` and JSON at `/dev/api/mailbox` (for tests and browser
tests). Only mounted in development without SMTP: the messages carry personal
data and live reply links. A message's HTML is shown in a sandboxed frame,
served with a CSP that allows no script and no remote content.
"""

from __future__ import annotations

import datetime as dt
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .framing import EMAIL_HTML_POLICY
from .local_time import datetime_fr
from .problems import Problem
from .settings import Settings

_ID = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")
_PARSER = BytesParser(policy=policy.default)


def mailbox_dir(settings: Settings) -> Path:
    """Where the dev mailbox transport writes emails and the mailbox page reads them."""
    return settings.var_dir / "mailbox"


def routes(settings: Settings) -> list[Route]:
    """The mailbox routes, or none when emails really leave (or in production)."""
    if settings.smtp_url or settings.production:
        return []
    return [
        Route("/dev/mailbox", mailbox_page, methods=["GET"], name="mailbox"),
        Route("/dev/mailbox/vider", clear_page, methods=["POST"], name="mailbox_clear"),
        Route("/dev/mailbox/{id}", message_page, methods=["GET"], name="mailbox_message"),
        Route("/dev/mailbox/{id}/html", message_html, methods=["GET"], name="mailbox_html"),
        Route(
            "/dev/mailbox/{id}/attachments/{n:int}", attachment, methods=["GET"], name="mailbox_attachment"
        ),
        Route("/dev/api/mailbox", api_list, methods=["GET", "DELETE"], name="mailbox_api"),
        Route("/dev/api/mailbox/{id}", api_message, methods=["GET"], name="mailbox_api_message"),
    ]


# --- reading the folder ---------------------------------------------------------


def _directory(request: Request) -> Path:
    return mailbox_dir(request.app.state.settings)


def _paths(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    # Names start with the delivery time: reverse name order is newest first.
    return sorted((p for p in directory.glob("*.eml") if _ID.fullmatch(p.stem)), reverse=True)


def _load(directory: Path, message_id: str, *, headers_only: bool = False) -> EmailMessage:
    path = directory / f"{message_id}.eml"
    if not _ID.fullmatch(message_id) or not path.is_file():
        raise Problem(404, "Ce message n'existe pas ou a été effacé.")
    with open(path, "rb") as file:
        return _PARSER.parse(file, headersonly=headers_only)


def _date(message: EmailMessage) -> dt.datetime | None:
    try:
        return parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
    except (TypeError, ValueError):
        return None


def _summary(message_id: str, message: EmailMessage) -> dict[str, Any]:
    date = _date(message)
    return {
        "id": message_id,
        "date": date.isoformat() if date else None,
        "date_display": datetime_fr(date) if date else "",
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "subject": str(message.get("Subject", "")),
        "message_id": str(message.get("Message-ID", "")),
        "in_reply_to": str(message.get("In-Reply-To", "")) or None,
        "template": str(message.get("X-LBA-Template", "")) or None,
    }


def summaries(directory: Path) -> list[dict[str, Any]]:
    return [
        _summary(path.stem, _PARSER.parsebytes(path.read_bytes(), headersonly=True))
        for path in _paths(directory)
    ]


def clear(directory: Path) -> int:
    paths = _paths(directory)
    for path in paths:
        path.unlink(missing_ok=True)
    return len(paths)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []
        self._open: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = (dict(attrs).get("href") or "").strip()
        # Listed as links on our own page: only schemes that cannot run script.
        if tag == "a" and href.lower().startswith(("http://", "https://", "mailto:", "tel:")):
            self._open = {"href": href, "text": ""}
            self.links.append(self._open)

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] = " ".join((self._open["text"] + " " + data).split())

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._open = None


def _parts(message: EmailMessage) -> dict[str, Any]:
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    html = str(html_part.get_content()) if html_part is not None else ""
    links = _Links()
    links.feed(html)
    return {
        "html": html,
        "text": str(text_part.get_content()).replace("\r\n", "\n") if text_part is not None else "",
        "links": links.links,
        "headers": [(name, str(value)) for name, value in message.items()],
        "attachments": [
            {
                "n": n,
                "filename": part.get_filename() or f"piece-jointe-{n + 1}",
                "content_type": part.get_content_type(),
                "size": len(part.get_payload(decode=True) or b""),
            }
            for n, part in enumerate(message.iter_attachments())
        ],
    }


# --- endpoints (plain functions: Starlette runs them in a thread, files are read there) ---


def mailbox_page(request: Request) -> Response:
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        "pages/mailbox.html",
        {"title": "Boîte mail de développement", "messages": summaries(_directory(request))},
    )
    return response


def clear_page(request: Request) -> Response:
    clear(_directory(request))
    # A path, not an absolute URL: the Host header is the client's to forge.
    return RedirectResponse(request.app.url_path_for("mailbox"), status_code=303)


def message_page(request: Request) -> Response:
    message_id = request.path_params["id"]
    message = _load(_directory(request), message_id)
    summary = _summary(message_id, message)
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        "pages/mailbox_message.html",
        {"title": summary["subject"] or "(sans objet)", "message": summary, **_parts(message)},
    )
    return response


def message_html(request: Request) -> Response:
    message = _load(_directory(request), request.path_params["id"])
    part = message.get_body(("html",))
    if part is None:
        raise Problem(404, "Ce message n'a pas de version HTML.")
    # Links open outside the sandboxed frame, like in a mail client.
    html = re.sub(
        r"(<head[^>]*>)", r'\1<base target="_blank">', str(part.get_content()), count=1, flags=re.IGNORECASE
    )
    return Response(
        html,
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": EMAIL_HTML_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def attachment(request: Request) -> Response:
    message = _load(_directory(request), request.path_params["id"])
    parts = list(message.iter_attachments())
    n = request.path_params["n"]
    if not 0 <= n < len(parts):
        raise Problem(404, "Cette pièce jointe n'existe pas.")
    part = parts[n]
    filename = part.get_filename() or f"piece-jointe-{n + 1}"
    return Response(
        part.get_payload(decode=True) or b"",
        media_type=part.get_content_type(),
        headers={
            # Always a download: an HTML attachment must not run on our origin.
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
            "X-Content-Type-Options": "nosniff",
        },
    )


def api_list(request: Request) -> Response:
    directory = _directory(request)
    if request.method == "DELETE":
        clear(directory)
        return Response(status_code=204)
    return JSONResponse({"messages": [_public(s) for s in summaries(directory)]})


def api_message(request: Request) -> Response:
    message_id = request.path_params["id"]
    return JSONResponse(message_json(message_id, _load(_directory(request), message_id)))


def message_json(message_id: str, message: EmailMessage) -> dict[str, Any]:
    """A message as the mailbox APIs show it (this one and the test mailbox's):
    its summary, text and HTML parts, links, headers and attachments."""
    parts = _parts(message)
    parts["headers"] = [{"name": name, "value": value} for name, value in parts["headers"]]
    return {**_public(_summary(message_id, message)), **parts}


def parse(raw: bytes) -> EmailMessage:
    """An email as stored (the outbox's bytes), parsed."""
    message = _PARSER.parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


def _public(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in summary.items() if key != "date_display"}
