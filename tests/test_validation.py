"""Field checks: properties over arbitrary input, and the French specifics."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from email_validator import validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests import seed
from tests.support import application, appointment, docx
from widget_server import tables
from widget_server.cv import DOCX, PDF, check_cv, safe_filename
from widget_server.problems import Problem
from widget_server.targets import BadTarget, is_valid_siret, parse_target
from widget_server.validation import (
    FieldErrors,
    _plain_address,
    clean_email,
    clean_message,
    clean_name,
    clean_phone,
    email_identity,
)


@given(st.text())
def test_any_name_is_either_clean_or_an_error_never_a_crash(value: str) -> None:
    errors = FieldErrors()
    cleaned = clean_name(errors, "first_name", value, "prénom")
    if not errors:
        assert 1 <= len(cleaned) <= 50
        assert not any(c in cleaned for c in "\r\n<")


# Arbitrary text is almost never a phone number or an email address: without
# these, the "clean" branch of the properties below would hardly ever run.
PHONE_LIKE = st.from_regex(r"(\+33 ?|0033|0)[1-9]([ .]?[0-9]{2}){4}", fullmatch=True)
EMAIL_LIKE = st.emails().flatmap(lambda e: st.sampled_from([e, e.upper(), e.swapcase()]))


@given(st.one_of(st.text(), PHONE_LIKE))
@example("06 12 34 56 78")
def test_any_phone_is_e164_or_an_error(value: str) -> None:
    errors = FieldErrors()
    cleaned = clean_phone(errors, "phone", value)
    if not errors:
        assert cleaned.startswith("+") and cleaned[1:].isdigit()
        again = FieldErrors()
        assert clean_phone(again, "phone", cleaned) == cleaned and not again


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("01 99 00 12 34", "+33199001234"),
        ("0262 12 34 56", "+262262123456"),
    ],
)
def test_french_numbers_are_normalised(raw: str, e164: str) -> None:
    errors = FieldErrors()
    assert clean_phone(errors, "phone", raw) == e164 and not errors


@pytest.mark.parametrize("raw", ["08 99 12 34 56", "0899123456", "08 10 12 34 56"])
def test_premium_and_shared_cost_numbers_are_refused(raw: str) -> None:
    errors = FieldErrors()
    clean_phone(errors, "phone", raw)
    assert errors.errors and "surtaxés" in errors.errors[0]["message"]


@given(st.one_of(st.text(max_size=200), EMAIL_LIKE))
@example("Lea.Moreau@Example.ORG")
def test_any_email_is_normalised_or_an_error(value: str) -> None:
    errors = FieldErrors()
    cleaned = clean_email(errors, "email", value)
    if not errors:
        assert "@" in cleaned and cleaned.split("@")[1] == cleaned.split("@")[1].lower()


def test_message_drops_control_characters_and_is_bounded() -> None:
    errors = FieldErrors()
    assert clean_message(errors, "message", "a\x00b\r\nc") == "ab\nc"
    clean_message(errors, "message", "x" * 3001)
    assert errors.errors[0]["field"] == "message"


@given(st.text())
def test_target_parsing_never_crashes(value: str) -> None:
    try:
        target = parse_target(value)
    except BadTarget:
        return
    assert str(target) == f"{target.kind}:{target.ref}"


def test_siret_luhn_key() -> None:
    assert is_valid_siret("73282932000074")
    assert not is_valid_siret("73282932000075")
    assert not is_valid_siret("7328293200007")
    assert is_valid_siret("35600000049837")  # La Poste: digit sum a multiple of 5


def test_cv_type_comes_from_the_content() -> None:
    assert check_cv("x.exe", b"%PDF-1.7 ...", 1000).content_type == PDF
    assert check_cv("x.pdf", docx(), 10000).content_type == DOCX
    other_zip = io.BytesIO()
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("content.xml", "odt")
    for data in (b"GIF89a", other_zip.getvalue(), b"PK\x03\x04broken"):
        with pytest.raises(Problem) as refused:
            check_cv("cv.pdf", data, 10000)
        assert refused.value.status == 415


@given(st.text())
def test_safe_filename_is_always_plain(name: str) -> None:
    cleaned = safe_filename(name, PDF)
    assert cleaned.endswith(".pdf") and "/" not in cleaned and "\\" not in cleaned
    assert cleaned.isascii() and len(cleaned) <= 64


# --- one normaliser per field: the form and the directory import agree ------------

PHONES = [
    "06 12 34 56 78",
    "+33 6 12 34 56 78",
    "0262 12 34 56",  # La Réunion
    "0590 12 34 56",  # Guadeloupe
    "+687 28 12 34",  # Nouvelle-Calédonie, with its own country code
    "08 99 12 34 56",  # premium rate
    "+44 20 7946 0958",  # not French
    "12",
    "",
]
EMAILS = [
    "Lea.Moreau@Example.ORG",
    "pas-un-email",
    "a@mailinator.com",
    "x@ex ample.org",
    "=?utf-8?q?a=40evil.example?=@example.org",
    "",
]


def _import_parser(kind: str, column: str) -> Any:
    from widget_server.directory import SPECS

    [field] = [f for f in SPECS[kind].columns if f.name == column]
    return field.parse


def _import_accepts(kind: str, column: str, value: str) -> str | None:
    from widget_server.directory import _Invalid

    try:
        return str(_import_parser(kind, column)(value.strip()))
    except _Invalid:
        return None


@pytest.mark.parametrize("value", PHONES)
def test_the_form_and_the_import_accept_the_same_phone_numbers(value: str) -> None:
    errors = FieldErrors()
    from_form = clean_phone(errors, "phone", value)
    from_import = _import_accepts("formations", "cfa_phone", value) if value else None
    assert (from_form if not errors else None) == from_import


@given(st.text(alphabet="0123456789 +.()-", max_size=20))
def test_any_phone_is_judged_alike_by_the_form_and_the_import(value: str) -> None:
    errors = FieldErrors()
    from_form = clean_phone(errors, "phone", value)
    from_import = _import_accepts("formations", "cfa_phone", value) if value.strip() else None
    assert (from_form if not errors else None) == from_import


@pytest.mark.parametrize("value", EMAILS)
@pytest.mark.parametrize("kind", ["formations", "offers", "companies"])
def test_the_form_and_the_import_accept_the_same_emails(kind: str, value: str) -> None:
    errors = FieldErrors()
    from_form = clean_email(errors, "email", value)
    from_import = _import_accepts(kind, "contact_email", value) if value else None
    # The import stores a contact by identity (case-folded): it is the key of opt-outs.
    assert (email_identity(from_form) if not errors else None) == from_import


def test_email_identity_folds_letter_case_only() -> None:
    assert email_identity("Lea.Moreau@example.org") == email_identity("LEA.MOREAU@example.org")
    assert email_identity("lea@example.org") != email_identity("lea2@example.org")


@pytest.mark.parametrize("raw", ["200000", "41 12 34", "0262 12 34"])
def test_a_short_number_is_not_taken_for_an_overseas_one(raw: str) -> None:
    errors = FieldErrors()
    clean_phone(errors, "phone", raw)
    assert errors.errors, f"{raw!r} accepted"


# Addresses near the edges of the plain ASCII fast path: dots, hyphens, Punycode
# and "xx--" labels, numeric and special-use top-level names, long parts.
EDGY_ASCII_EMAIL = st.from_regex(
    r"[A-Za-z0-9_+.\-'!]{0,70}@([A-Za-z0-9\-]{0,66}\.){1,4}(xn--[a-z0-9]{1,6}|[A-Za-z0-9\-]{1,8}"
    r"|localhost|test|local|onion|arpa|invalid)",
    fullmatch=True,
)


@given(st.one_of(EMAIL_LIKE, EDGY_ASCII_EMAIL, st.text(alphabet=st.characters(max_codepoint=127))))
@example("lea.moreau@Example.FR")
@example("a@b.localhost")
@example("a@xn--e1afmkfd.xn--p1ai")
@example("x@ab--cd.fr")
@example("x@a.123")
@example("-@a.fr")
def test_the_plain_address_fast_path_agrees_with_email_validator(value: str) -> None:
    # An address the fast path takes, email_validator takes too, and the two
    # normalise it the same way (the fast path only saves time).
    plain = _plain_address(value)
    if plain is None:
        return
    result = validate_email(value, check_deliverability=False)
    assert plain == (result.local_part, result.domain.lower())


def test_the_plain_address_fast_path_takes_common_addresses() -> None:
    assert _plain_address("Lea.Moreau+cv@Mail.Example.FR") == ("Lea.Moreau+cv", "mail.example.fr")
    assert _plain_address("rh12@entreprise-12.example") == ("rh12", "entreprise-12.example")
    for other in ("léa@exemple.fr", "a@xn--e1afmkfd.xn--p1ai", "a@b.test", '"a b"@c.fr', "a..b@c.fr"):
        assert _plain_address(other) is None


def _luhn_by_the_book(value: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(value)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@settings(deadline=None)
@given(st.text(alphabet="0123456789", min_size=14, max_size=14) | st.text(max_size=16))
@example("73282932000074")
@example("٧٣٢٨٢٩٣٢٠٠٠٠٧٤")  # other scripts' digits: decimal digits, as before
@example("7328293200007²")  # a digit for isdigit(), not for int(): refused, never raised
@example("35600000049837")
@example("356000000498٣7")
def test_siret_key_is_luhn(value: str) -> None:
    expected = len(value) == 14 and value.isdecimal()
    if expected and value.startswith("356000000"):
        expected = sum(int(c) for c in value) % 5 == 0
    elif expected:
        expected = _luhn_by_the_book(value)
    assert is_valid_siret(value) is expected


@pytest.mark.parametrize("value", [["Léa"], {"prenom": "Léa"}, True, [], {}])
@pytest.mark.parametrize("field", ["first_name", "last_name", "email", "phone", "message"])
def test_a_list_an_object_or_a_boolean_is_not_text(client: Any, field: str, value: Any) -> None:
    """JSON brings them; their Python form ("['Léa']", "True") was stored as a name."""
    seed.offer(client)
    response = client.post(
        "/api/v1/applications",
        json=application(**{field: value}),
        headers={"Authorization": f"Bearer {seed.api_key(client)}"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [{"field": field, "message": "Ce champ attend du texte."}]
    assert seed.fetch_all(client, tables.contact_requests.select()) == []


def test_a_number_is_read_as_its_digits() -> None:
    errors = FieldErrors()
    assert clean_phone(errors, "phone", 612345678) == "+33612345678"
    assert clean_message(errors, "message", 42) == "42"
    assert not errors


def test_unknown_topics_are_repeated_short_and_few(client: Any) -> None:
    """A refusal does not send back whatever was posted, however much."""
    seed.formation(client)
    topics = ["places", *(f"x{n}\x00" + "y" * 1000 for n in range(1000))]
    response = client.post(
        "/api/v1/appointment-requests",
        json=appointment(topics=topics),
        headers={"Authorization": f"Bearer {seed.api_key(client)}"},
    )
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "topics"
    assert error["message"].startswith("Sujet inconnu : x0yyy") and error["message"].endswith(" ….")
    assert len(error["message"]) < 200 and "\x00" not in error["message"]
