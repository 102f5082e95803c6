"""The two request kinds as data: what differs between "Je candidate" and
"Rendez-vous apprentissage" (target, extra fields, emails, buttons, quotas) is
described here; everything else goes through one pipeline (`contact_requests`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .settings import Settings
from .targets import TargetKind
from .validation import FieldErrors, clean_message, strip_unrenderable

KindName = Literal["candidature", "rdv"]


@dataclass(frozen=True)
class Action:
    """A quick-reply button of a pro email; `code` is stored on the token and the answer.
    A secondary action is a small text link after the answers, not a button."""

    code: str
    label: str
    secondary: bool = False


@dataclass(frozen=True)
class Quota:
    """At most `max_count` requests per `scope` within `window` (None: ever)."""

    scope: Literal["email_target", "email", "caller_company"]
    max_count: int
    window: dt.timedelta | None
    message: str


REFUSAL_REASONS = (
    ("competences", "Compétences insuffisantes ou non adaptées"),
    ("personnalisation", "Manque de personnalisation de la candidature"),
    ("ecole", "Avis négatif sur l'école/la formation"),
    ("contrat", "Type de contrat inadapté"),
    ("metier", "Notre entreprise ne recrute pas sur le métier recherché"),
)

TOPICS = (
    ("modalites", "Modalités d'inscription"),
    ("places", "Places disponibles"),
    ("accompagnement", "Accompagnement dans la recherche d'entreprise"),
    ("frais", "Frais d'inscription"),
    ("contenu", "Contenu de la formation"),
    ("horaires", "Horaires / rythme de la formation"),
    ("debouches", "Situation des élèves en sortie de formation"),
    ("alternance", "En savoir plus sur l'alternance"),
    ("suivi", "Suivi de ma candidature"),
    ("lieu", "Lieu de la formation"),
    ("portes_ouvertes", "Portes ouvertes"),
    ("autre", "Autre"),
)
TOPIC_LABELS = dict(TOPICS)
ROLES = (("student", "l'apprenti(e)"), ("parent", "un parent"))

OPT_OUT = Action("optout", "Ne plus recevoir de demandes")
SPONTANEOUS_OPT_OUT = Action("optout", "Ne plus recevoir de candidatures spontanées", secondary=True)
# "Offre pourvue": closes the offer and answers the candidate (offer_filled.py).
OFFER_FILLED = Action("filled", "L'offre est pourvue", secondary=True)


@dataclass(frozen=True)
class RequestKind:
    name: KindName
    title: str
    # Which request field names the target, and of what kind.
    target_fields: Mapping[str, TargetKind]
    needs_cv: bool
    clean_extras: Callable[[FieldErrors, Mapping[str, Any]], dict[str, Any]]
    pro_email: str
    ack_email: str
    actions: tuple[Action, ...]
    token_days: int
    quotas: Callable[[Settings], tuple[Quota, ...]]
    accepted: str  # French acknowledgement headline

    def actions_for(self, target_kind: TargetKind) -> tuple[Action, ...]:
        if self.name == "candidature" and target_kind == "company":
            return (*self.actions, SPONTANEOUS_OPT_OUT)
        if self.name == "candidature" and target_kind == "offer":
            return (*self.actions, OFFER_FILLED)
        return self.actions


def _candidature_extras(errors: FieldErrors, data: Mapping[str, Any]) -> dict[str, Any]:
    return {"message": clean_message(errors, "message", data.get("message")) or None}


# How much of the unknown topics a refusal repeats.
UNKNOWN_SHOWN = 3
UNKNOWN_SHOWN_LENGTH = 40


def _rdv_extras(errors: FieldErrors, data: Mapping[str, Any]) -> dict[str, Any]:
    role = str(data.get("role") or "").strip()
    if role not in dict(ROLES):
        errors.add("role", "Indiquez si vous êtes l'apprenti(e) ou un parent.")
    raw_topics = data.get("topics") or []
    if isinstance(raw_topics, str):
        raw_topics = [raw_topics]
    if not isinstance(raw_topics, list | tuple):
        raw_topics = []
    topics = [str(t) for t in raw_topics]
    unknown = [t for t in topics if t not in TOPIC_LABELS]
    if unknown:
        # Echoed back, but not whatever was sent: a few, short, printable.
        shown = [strip_unrenderable(t)[:UNKNOWN_SHOWN_LENGTH] for t in unknown[:UNKNOWN_SHOWN]]
        more = " …" if len(unknown) > UNKNOWN_SHOWN else ""
        errors.add("topics", f"Sujet inconnu : {', '.join(shown)}{more}.")
    elif not topics:
        errors.add("topics", "Choisissez au moins un sujet.")
    message = clean_message(errors, "message", data.get("message"), required="autre" in topics)
    ordered = [code for code, _ in TOPICS if code in topics]
    return {"role": role, "topics": ordered, "message": message or None}


CANDIDATURE = RequestKind(
    name="candidature",
    title="Je candidate",
    target_fields={"offer_id": "offer", "siret": "company"},
    needs_cv=True,
    clean_extras=_candidature_extras,
    pro_email="candidature_pro",
    ack_email="candidature_ack",
    actions=(Action("accept", "Répondre au candidat"), Action("refuse", "Refuser la candidature")),
    token_days=30,
    quotas=lambda s: (
        Quota(
            "email_target",
            s.applications_per_target,
            None,
            "Vous avez déjà envoyé {max} candidatures à ce recruteur.",
        ),
        Quota(
            "email",
            s.applications_per_day,
            dt.timedelta(days=1),
            "Vous avez envoyé beaucoup de candidatures aujourd'hui : réessayez demain.",
        ),
        Quota(
            "caller_company",
            s.caller_applications_per_company_per_day,
            dt.timedelta(days=1),
            "Cette entreprise a reçu beaucoup de candidatures aujourd'hui : réessayez demain.",
        ),
    ),
    accepted="Votre candidature a bien été envoyée !",
)

RDV = RequestKind(
    name="rdv",
    title="Rendez-vous apprentissage",
    target_fields={"formation_id": "formation"},
    needs_cv=False,
    clean_extras=_rdv_extras,
    pro_email="rdv_pro",
    ack_email="rdv_ack",
    actions=(
        Action("reply", "Répondre au candidat"),
        Action("other_channel", "J'ai répondu par un autre canal"),
        Action("unreachable", "Le candidat est injoignable"),
    ),
    token_days=60,
    quotas=lambda s: (
        Quota(
            "email_target",
            1,
            dt.timedelta(days=s.rdv_interval_days),
            "Vous avez déjà contacté cet établissement récemment. "
            "Vous pourrez lui écrire à nouveau à partir du {date}.",
        ),
    ),
    accepted="Votre demande a bien été envoyée !",
)

KINDS: dict[str, RequestKind] = {k.name: k for k in (CANDIDATURE, RDV)}
# The first emails to a recruiter or a CFA (reminders are queued as "reminder").
PRO_EMAILS = tuple(k.pro_email for k in KINDS.values())
