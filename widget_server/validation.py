"""Field checks shared by both request kinds. Messages are French: they are shown
next to the field in the form pages and in the API's `errors` list."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import phonenumbers
from disposable_email_domains import blocklist as _DISPOSABLE
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from .problems import Problem

NAME_MAX = 50
_SPECIAL_USE_DOMAINS = frozenset(SPECIAL_USE_DOMAIN_NAMES)
MESSAGE_MAX = 3000


def _is_noncharacter(code_point: int) -> bool:
    """U+FDD0–U+FDEF and the last two code points of every plane (U+FFFE, U+FFFF…)."""
    return 0xFDD0 <= code_point <= 0xFDEF or code_point & 0xFFFE == 0xFFFE


def unsafe_char(char: str) -> bool:
    """Never in a name or a header: controls (CR, LF, NUL…), format characters
    (bidi overrides, zero-width…), line and paragraph separators, surrogates
    and noncharacters."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs") or _is_noncharacter(ord(char))


def _unrenderable(char: str) -> bool:
    """What free text may not carry into a page or an email: controls other than
    tab and line feed, line and paragraph separators, surrogates (JSON can carry
    them) and noncharacters (mjml-python chokes on U+FFFE)."""
    if char in "\t\n":
        return False
    return unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs") or _is_noncharacter(ord(char))


def strip_unrenderable(text: str) -> str:
    return "".join(c for c in text if not _unrenderable(c))


# RFC 2047 encoded words start with `=?` and end with `?=`: either half is refused,
# since a first and a last name could each bring one.
_ENCODED_WORD_MARKER = re.compile(r"=\?|\?=")


class FieldErrors(Exception):
    """Collects `{field, message}` pairs; raised as 422 once every field was looked at."""

    def __init__(self) -> None:
        super().__init__("invalid fields")
        self.errors: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def __bool__(self) -> bool:
        return bool(self.errors)

    def problem(self) -> Problem:
        return Problem(
            422, "Certaines informations sont à corriger.", code="invalid_fields", errors=self.errors
        )


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    return unicodedata.normalize("NFC", value).strip()


def _not_text(errors: FieldErrors, field: str, value: Any) -> bool:
    """Whether JSON brought a list, an object or a boolean where text belongs (noted
    next to the field): its Python form ("['Léa']", "True") must not pass for a
    name, an address or a message. A number is read as its digits."""
    if value is None or isinstance(value, str):
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return False
    errors.add(field, "Ce champ attend du texte.")
    return True


def clean_name(errors: FieldErrors, field: str, value: Any, label: str) -> str:
    if _not_text(errors, field, value):
        return ""
    text = " ".join(_text(value).split())
    if not text:
        errors.add(field, f"Indiquez votre {label}.")
    elif any(unsafe_char(c) for c in _text(value)) or _ENCODED_WORD_MARKER.search(text):
        # A name goes into headers (To, Reply-To, Subject): nothing that could end a line there.
        errors.add(
            field,
            f"Votre {label} contient des caractères non acceptés (retours à la ligne, "
            "caractères invisibles ou suites « =? » et « ?= »).",
        )
    elif len(text) > NAME_MAX:
        errors.add(field, f"Votre {label} doit faire au plus {NAME_MAX} caractères.")
    elif not any(c.isalpha() for c in text) or "<" in text:
        errors.add(field, f"Votre {label} contient des caractères non acceptés.")
    return text


class InvalidValue(ValueError):
    """A value one of the normalisers below refuses: `message` for candidates
    (French, shown next to the field), `reason` for operators (English, in the
    import report)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.reason = reason


# --- email: one normaliser for forms, API, bounce reports and imports -------------


def normalise_email(value: Any) -> str:
    """The address to write to: the local part as given (it may be case-sensitive
    for the receiving server), the domain in lower case. Disposable domains are
    refused."""
    text = _text(value)
    if not text:
        raise InvalidValue("Indiquez votre adresse e-mail.", "empty")
    if _ENCODED_WORD_MARKER.search(text):
        # Valid characters of a local part, but a mail reader may decode
        # `=?utf-8?q?lea=40evil.example?=@example.org` into another address (the
        # candidate's goes into the recruiter's Reply-To): refused, as in names.
        raise InvalidValue(
            "Cette adresse e-mail contient des suites « =? » ou « ?= » non acceptées.",
            "an RFC 2047 encoded-word marker",
        )
    plain = _plain_address(text)
    if plain is not None:
        local_part, domain = plain
    else:
        try:
            result = validate_email(text, check_deliverability=False)
        except EmailNotValidError:
            raise InvalidValue(
                "Cette adresse e-mail n'est pas valide (exemple : prenom.nom@exemple.fr).",
                "not a valid email address",
            ) from None
        local_part, domain = result.local_part, result.domain.lower()
    if domain in _DISPOSABLE or domain.split(".", 1)[-1] in _DISPOSABLE:
        raise InvalidValue(
            "Les adresses e-mail jetables ne sont pas acceptées : indiquez une adresse que vous consultez.",
            "a disposable email domain",
        )
    return f"{local_part}@{domain}"


# The common case, a plain ASCII address, without email_validator (three quarters
# of a directory import's time went there): what this accepts, email_validator
# accepts too and normalises the same way (a property test checks it); anything
# else (other characters, Punycode, special-use names…) goes to email_validator.
_PLAIN_ADDRESS = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)@"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
)


def _plain_address(text: str) -> tuple[str, str] | None:
    """(local part, domain in lower case) of a plain ASCII address, or None."""
    match = _PLAIN_ADDRESS.fullmatch(text)
    if match is None or len(text) > 254:
        return None
    local, domain = match.group("local", "domain")
    if len(local) > 64 or len(domain) > 253:
        return None
    domain = domain.lower()
    # Punycode and other "xx--" labels, and special-use names: email_validator's call.
    if domain.rpartition(".")[2] in _SPECIAL_USE_DOMAINS or (
        "--" in domain and any(label[2:4] == "--" for label in domain.split("."))
    ):
        return None
    return local, domain


def email_identity(address: str) -> str:
    """Who an address belongs to, whatever its letter case: what quotas count a
    candidate by, and the key of a directory contact. `X@Example.org` and
    `x@example.org` are one person."""
    return address.strip().casefold()


def _collect(errors: FieldErrors, field: str, normalise: Callable[[Any], str], value: Any) -> str:
    """A normaliser's answer, or its refusal noted next to the field (the text as
    given is kept, for the page to show it again)."""
    if _not_text(errors, field, value):
        return ""
    try:
        return normalise(value)
    except InvalidValue as exc:
        errors.add(field, exc.message)
        return _text(value)


def clean_email(errors: FieldErrors, field: str, value: Any) -> str:
    return _collect(errors, field, normalise_email, value)


# --- phone: one normaliser for forms, API and imports ------------------------------

# Overseas departments dial like mainland France (0262…, 0690…) but are regions of
# their own, so a national number is tried against each in turn.
_DIALLED_LIKE_FRANCE = ("FR", "RE", "GP", "MQ", "GF", "YT", "PM", "BL", "MF")
# …and these, with their own country codes, are French too when written with it.
_FRENCH_REGIONS = frozenset({*_DIALLED_LIKE_FRANCE, "NC", "PF", "WF"})
_REFUSED_TYPES = (phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.SHARED_COST)


def normalise_phone(value: Any) -> str:
    """A French number (mainland or overseas) in E.164; premium-rate and
    shared-cost numbers are refused."""
    text = _text(value)
    if not text:
        raise InvalidValue("Indiquez votre numéro de téléphone.", "empty")
    number = _parse_french_number(text)
    if number is None:
        raise InvalidValue(
            "Ce numéro de téléphone n'est pas valide (exemple : 06 12 34 56 78).",
            "not a valid French phone number",
        )
    if phonenumbers.number_type(number) in _REFUSED_TYPES:
        raise InvalidValue("Les numéros surtaxés ne sont pas acceptés.", "a premium-rate number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def clean_phone(errors: FieldErrors, field: str, value: Any) -> str:
    return _collect(errors, field, normalise_phone, value)


def _parse_french_number(text: str) -> Any:
    digits = re.sub(r"\D", "", text)
    # Only a full national number (0 and nine digits) is tried as an overseas one:
    # "200000" is not a Saint-Pierre-et-Miquelon number typed on purpose.
    national = not text.startswith(("+", "00")) and len(digits) == 10 and digits.startswith("0")
    for region in _DIALLED_LIKE_FRANCE if national else _DIALLED_LIKE_FRANCE[:1]:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return None
        if phonenumbers.is_valid_number(number):
            if phonenumbers.region_code_for_number(number) not in _FRENCH_REGIONS:
                return None
            return number
    return None


def clean_message(errors: FieldErrors, field: str, value: Any, *, required: bool = False) -> str:
    if _not_text(errors, field, value):
        return ""
    text = strip_unrenderable(_text(value).replace("\r\n", "\n"))
    if required and not text:
        errors.add(field, "Écrivez votre message.")
    elif len(text) > MESSAGE_MAX:
        errors.add(
            field, f"Votre message doit faire au plus {MESSAGE_MAX} caractères (il en fait {len(text)})."
        )
    return text


def display_phone(e164: str) -> str:
    """+33612345678 → 06 12 34 56 78, for humans reading an email."""
    try:
        number = phonenumbers.parse(e164, "FR")
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
