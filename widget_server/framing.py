"""Who may frame which page (issue #6, item 4).

The hosted form pages are meant to be framed by partner sites: any site by
default, or only the origins of `FRAME_ANCESTORS`. They also get a strict
content policy: their own scripts and styles only, no third-party request, and
forms posting back to the service. Every other HTML page refuses framing
(clickjacking on the quick-reply pages would be the risk).
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_PATHS = ("/widget/v1/candidature", "/widget/v1/rdv")

# Every content policy of the service is written here, and only here (issue #14, item 3).

# The service's own pages (forms, quick replies, opt-out): their own scripts, styles
# and images only, no third-party request, forms posting back to the service.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'"
)
# An email's HTML in the dev mailbox: no script, no remote content; framed by the
# mailbox's message page only (browsers then ignore X-Frame-Options: DENY).
EMAIL_HTML_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
NO_FRAMING = "frame-ancestors 'none'"


def operator_policy(nonce: str) -> str:
    """The operator page's: nothing but its own inline style (by nonce), no form, no framing."""
    return f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'; {NO_FRAMING}"


def form_policy(frame_ancestors: Iterable[str]) -> str:
    origins = list(frame_ancestors)
    # 'self' keeps the live preview of /integration working whatever the setting.
    ancestors = "*" if not origins or "*" in origins else " ".join(["'self'", *origins])
    return f"{PAGE_POLICY}; frame-ancestors {ancestors}"


# What a partner page's own policy must allow for the widget: the loader and the
# modal code (scripts), the eligibility requests (connect), the form pages
# (frames), all from the service's origin. Its styles are constructed style
# sheets, which no style-src blocks. /integration shows this line to partners.
WIDGET_DIRECTIVES = ("script-src", "connect-src", "frame-src")


def widget_policy_line(widget_url: str) -> str:
    """The directives a partner adds to its policy (its own sources kept beside)."""
    return "; ".join(f"{directive} {widget_url}" for directive in WIDGET_DIRECTIVES)


def host_policy(widget_url: str) -> str:
    """The example partner site's: the widget needs its origin allowed for scripts,
    requests and frames, and nothing more."""
    return (
        f"default-src 'self'; script-src 'self' {widget_url}; connect-src {widget_url}; "
        f"frame-src {widget_url}; style-src 'self'; img-src 'self' data:; base-uri 'none'"
    )


class FramingMiddleware:
    """Adds the framing policy to every HTML response, by path."""

    def __init__(self, app: ASGIApp, frame_ancestors: Iterable[str] = ("*",)) -> None:
        self.app = app
        self.form_policy = form_policy(frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_form = scope["path"].rstrip("/") in FORM_PATHS

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):
                    if is_form:
                        headers["Content-Security-Policy"] = self.form_policy
                    else:
                        _deny_framing(headers)
            await send(message)

        await self.app(scope, receive, send_with_policy)


def _deny_framing(headers: MutableHeaders) -> None:
    policy = headers.get("content-security-policy")
    if policy is None:
        headers["Content-Security-Policy"] = NO_FRAMING
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; {NO_FRAMING}"
    headers["X-Frame-Options"] = "DENY"
