"""Plain informational pages, and what every page reached through a secret link
(quick replies, opt-out) sends with it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .framing import PAGE_POLICY


async def privacy(request: Request) -> Response:
    settings = request.app.state.settings
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        "pages/privacy.html",
        {
            "cv_days": settings.cv_retention_days,
            "years": settings.personal_data_retention_days // 365,
        },
    )
    return response


def private_page(response: Response) -> None:
    """Headers of a page reached through a secret link: not cached, not indexed,
    the link not leaked to other sites, no foreign script."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    # Framing is refused by the framing middleware, which appends `frame-ancestors 'none'`.
    response.headers["Content-Security-Policy"] = PAGE_POLICY
