"""Plain informational pages."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response


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
