"""Target references: `offer:<id>`, `company:<siret>`, `formation:<cle_ministere_educatif>`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TargetKind = Literal["offer", "company", "formation"]
TARGET_KINDS: tuple[TargetKind, ...] = ("offer", "company", "formation")

# Also the OpenAPI pattern of offer and formation ids.
REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._\-#]{0,99}$"
_REF = re.compile(REF_PATTERN)


class BadTarget(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    ref: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"


def is_valid_siret(value: str) -> bool:
    """14 digits with a valid Luhn key (La Poste's SIRETs, 356000000xxxxx, use another rule)."""
    if len(value) != 14 or not value.isdigit():
        return False
    if value.startswith("356000000"):
        return sum(int(c) for c in value) % 5 == 0
    total = 0
    for index, char in enumerate(reversed(value)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def make_target(kind: str, ref: str) -> Target:
    ref = ref.strip()
    if kind not in TARGET_KINDS:
        raise BadTarget(f"type de cible inconnu « {kind} » (offer, company ou formation)")
    if kind == "company":
        if not is_valid_siret(ref):
            raise BadTarget(f"« {ref} » n'est pas un SIRET valide (14 chiffres)")
    elif not _REF.match(ref):
        raise BadTarget(f"identifiant invalide « {ref} »")
    return Target(kind, ref)


def parse_target(value: str) -> Target:
    kind, sep, ref = value.partition(":")
    if not sep:
        raise BadTarget(f"« {value} » n'est pas de la forme type:identifiant")
    return make_target(kind, ref)
