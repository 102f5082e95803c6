"""Plain informational pages (the privacy notice), and what every page reached
through a secret link (quick replies, opt-out) sends with it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .framing import PAGE_POLICY
from .settings import Settings

CNIL_COMPLAINTS = "https://www.cnil.fr/fr/plaintes"


def duration_fr(days: int) -> str:
    """`730` → "2 ans", `30` → "30 jours", `1` → "1 jour": what a person reads."""
    if days >= 365 and days % 365 == 0:
        years = days // 365
        return f"{years} an{'s' if years > 1 else ''}"
    return f"{days} jour{'s' if days > 1 else ''}"


def privacy_context(settings: Settings) -> dict[str, object]:
    """What the privacy notice says (SPEC section 9, RGPD article 13), all from the settings."""
    return {
        "title": "Vos données personnelles",
        "operator_address": settings.operator_address,
        "contact_email": settings.privacy_contact_email,
        "dpo_contact": settings.dpo_contact,
        "dpo_is_email": "@" in settings.dpo_contact and not settings.dpo_contact.startswith("https://"),
        "legal_basis": settings.legal_basis,
        "cv_retention": duration_fr(settings.cv_retention_days),
        "data_retention": duration_fr(settings.personal_data_retention_days),
        "cnil_url": CNIL_COMPLAINTS,
    }


async def privacy(request: Request) -> Response:
    settings = request.app.state.settings
    response: Response = request.app.state.templates.TemplateResponse(
        request, "pages/privacy.html", privacy_context(settings)
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
