"""The three target kinds as data, in the style of `kinds.py`: where each kind is
stored, how it is named in a reference and in an import file, what an opt-out of
it stops, and what pages and emails say about it. Everything that differs
between an offer, a company and a formation is an entry here; eligibility,
requests, opt-outs, imports and the integration page read it.

References: `offer:<id>`, `company:<siret>`, `formation:<cle_ministere_educatif>`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from . import tables

TargetKind = Literal["offer", "company", "formation"]

# Also the OpenAPI pattern of offer and formation ids.
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-#]{0,99}$"
_REF = re.compile(REF_PATTERN)


@dataclass(frozen=True)
class TargetSpec:
    name: TargetKind
    # The directory table and its key column (the reference after `kind:`).
    table: sa.Table
    key: str
    # The import file kind (`widget-server import offers …`).
    file_kind: str
    # The `contacts` column an opt-out sets; None: the target itself closes
    # (a recruiter stops applications to one offer).
    opt_out_column: str | None
    # "vous ne recevrez plus …", in the opt-out page and its confirmation email.
    opt_out_scope: str
    # What pages and emails say about a target: view field → directory column
    # (None: the kind has no such thing).
    view: Mapping[str, str | None]

    @property
    def key_column(self) -> sa.Column[Any]:
        return self.table.c[self.key]

    def describe(self, record: Mapping[str, Any] | None, ref: str) -> dict[str, Any]:
        """The view of a target; a target gone from the directory keeps its reference as name."""
        if record is None:
            return {"kind": self.name, **{k: None for k in self.view}, "name": ref}
        return {"kind": self.name, **{k: record[c] if c else None for k, c in self.view.items()}}


OFFER = TargetSpec(
    name="offer",
    table=tables.offers,
    key="offer_id",
    file_kind="offers",
    opt_out_column=None,
    opt_out_scope="de candidatures pour cette offre",
    view={
        "name": "title",
        "company_name": "company_name",
        "city": "city",
        "siret": "siret",
        "contact_name": "company_name",
        "phone": None,
        "address": "address",
    },
)
COMPANY = TargetSpec(
    name="company",
    table=tables.companies,
    key="siret",
    file_kind="companies",
    opt_out_column="company_opt_out_at",
    opt_out_scope="de candidatures spontanées",
    view={
        "name": "name",
        "company_name": "name",
        "city": "city",
        "siret": "siret",
        "contact_name": "name",
        "phone": None,
        "address": "address",
    },
)
FORMATION = TargetSpec(
    name="formation",
    table=tables.formations,
    key="cle_ministere_educatif",
    file_kind="formations",
    opt_out_column="formation_opt_out_at",
    opt_out_scope="de demandes de rendez-vous pour vos formations",
    view={
        "name": "title",
        "company_name": "cfa_name",
        "city": "city",
        "siret": "cfa_siret",
        "contact_name": "cfa_name",
        "phone": "cfa_phone",
        "address": "cfa_address",
    },
)

# Why the service closed an offer (`offers.closed_reason`): its recruiter stopped
# applications from an email's link, or said the position is filled ("L'offre
# est pourvue"). A directory import never reopens it.
CLOSED_BY_RECRUITER = "opted_out"
CLOSED_FILLED = "filled"

TARGETS: dict[str, TargetSpec] = {t.name: t for t in (OFFER, COMPANY, FORMATION)}
TARGET_KINDS: tuple[TargetKind, ...] = tuple(t.name for t in TARGETS.values())
# Import file kind → target kind: `offers`, `companies`, `formations`.
BY_FILE_KIND: dict[str, TargetSpec] = {t.file_kind: t for t in TARGETS.values()}


class BadTarget(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    ref: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"

    @property
    def spec(self) -> TargetSpec:
        return TARGETS[self.kind]


def is_valid_siret(value: str) -> bool:
    """14 digits with a valid Luhn key (La Poste's SIRETs, 356000000xxxxx, use another rule)."""
    # Decimal digits: what int() reads (isdigit() also says yes to "²", which it cannot).
    if len(value) != 14 or not value.isdecimal():
        return False
    if value.startswith("356000000"):
        return sum(int(c) for c in value) % 5 == 0
    if not value.isascii():  # other scripts' digits, read as such
        value = "".join(str(int(c)) for c in value)
    # Luhn: from the right, every second digit doubled (less 9 past 9); of 14
    # digits, the first of each pair from the left. One lookup per pair.
    p = _LUHN_PAIRS
    total = p[value[0:2]] + p[value[2:4]] + p[value[4:6]] + p[value[6:8]]
    return (total + p[value[8:10]] + p[value[10:12]] + p[value[12:14]]) % 10 == 0


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_LUHN_PAIRS = {f"{a}{b}": _LUHN_DOUBLED[a] + b for a in range(10) for b in range(10)}


def make_target(kind: str, ref: str) -> Target:
    ref = ref.strip()
    spec = TARGETS.get(kind)
    if spec is None:
        raise BadTarget(f"type de cible inconnu « {kind} » (offer, company ou formation)")
    if spec is COMPANY:
        if not is_valid_siret(ref):
            raise BadTarget(f"« {ref} » n'est pas un SIRET valide (14 chiffres)")
    elif not _REF.match(ref):
        raise BadTarget(f"identifiant invalide « {ref} »")
    return Target(spec.name, ref)


def parse_target(value: str) -> Target:
    kind, sep, ref = value.partition(":")
    if not sep:
        raise BadTarget(f"« {value} » n'est pas de la forme type:identifiant")
    return make_target(kind, ref)
