"""`/integration`, the partners' page: the snippet to paste, the attributes and
events of the embed contract (SPEC §3), and a playground on real targets."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from databases import Database
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import eligibility
from .framing import widget_policy_line
from .targets import TARGETS, Target
from .widget import LOADER_PATH

# Targets of each kind the playground offers as choices, and how many of them
# may be ones that cannot receive requests (to show each reason).
CHOICES_PER_KIND = 20
UNAVAILABLE_CHOICES_PER_KIND = 4

# What the playground says of an eligibility answer's `reason`.
REASONS = {
    "unknown_target": "identifiant inconnu de l'annuaire",
    "closed": "offre fermée ou expirée",
    "no_contact": "aucune adresse de contact connue",
    "opted_out": "le contact ne veut plus recevoir de demandes",
    "bounced": "l'adresse de contact ne reçoit plus d'e-mails",
}


@dataclass(frozen=True)
class Choice:
    """A target of the directory, as the playground lists it."""

    kind: str
    ref: str
    name: str
    city: str
    reason: str | None


async def directory_choices(database: Database, max_offer_applications: int) -> list[Choice]:
    """Targets of the directory (the demo directory in development), with their
    eligibility: the ones that can receive requests first, then a few that
    cannot, one per reason where possible."""
    candidates: list[Target] = []
    for spec in TARGETS.values():
        key = spec.key_column
        rows = await database.fetch_all(sa.select(key).order_by(key).limit(CHOICES_PER_KIND))
        candidates += [Target(spec.name, row[0]) for row in rows]
    results = await eligibility.check_many(
        database, candidates, max_offer_applications=max_offer_applications
    )
    choices: list[Choice] = []
    for kind in TARGETS:
        of_kind = [r for r in results if r.target.kind == kind]
        unavailable: dict[str, eligibility.Eligibility] = {}
        for result in of_kind:
            if not result.eligible and result.reason and len(unavailable) < UNAVAILABLE_CHOICES_PER_KIND:
                unavailable.setdefault(result.reason, result)
        for result in [r for r in of_kind if r.eligible] + list(unavailable.values()):
            choices.append(
                Choice(kind, result.target.ref, result.name or "", result.city or "", result.reason)
            )
    return choices


def examples(choices: list[Choice]) -> dict[str, str]:
    """One eligible reference per target kind, to fill the snippet and the preview."""
    found: dict[str, str] = {}
    for choice in choices:
        if choice.reason is None:
            found.setdefault(choice.kind, choice.ref)
    return found


async def integration_page(request: Request) -> Response:
    state = request.app.state
    choices = await directory_choices(state.database, state.settings.offer_max_applications)
    response: Response = state.templates.TemplateResponse(
        request,
        "pages/integration.html",
        {
            "title": "Intégrer le widget",
            "loader_url": state.settings.public_url + LOADER_PATH,
            "examples": examples(choices),
            "choices": choices,
            "reasons": REASONS,
            "csp_line": widget_policy_line(state.settings.public_url),
        },
    )
    return response


routes = [Route("/integration", integration_page, methods=["GET"], name="integration")]
