"""The target directory: formations, offers and companies loaded from CSV or JSON
Lines files, every row checked, upserted by reference in batches.

A file describes whole rows: a column left out or a value left empty is stored
empty. Contact state (opt-out, bounce) is the exception: a file may set it, never
clear it, since an opt-out belongs to the contact who asked for it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import datetime as dt
import functools
import itertools
import json
import logging
import re
import sqlite3
import sys
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from databases import Database

from . import contacts as contact_marks
from . import migrations, tables
from .bundled import data_dir
from .targets import (
    CLOSED_BY_RECRUITER,
    CLOSED_FILLED,
    REF_PATTERN,
    TARGETS,
    TargetSpec,
    is_valid_siret,
)
from .validation import InvalidValue, email_identity, normalise_email, normalise_phone

log = logging.getLogger("widget_server.directory")

Progress = Callable[[int, int | None], None]

DEMO_DIR = data_dir("demo_data")
BATCH_SIZE = 1000
SUMMARY_MAX_REJECTED = 50
TEXT_MAX = 300
BOUNCE_REASON = "marked as bouncing by a directory import"
# Why a row stays closed whatever the file says, as the summary names it.
KEPT_CLOSED = {
    CLOSED_BY_RECRUITER: "opted out by their contact",
    CLOSED_FILLED: "filled, said their recruiter",
    "applications_cap": "applications cap reached",
}

_CSV_SUFFIXES = {".csv"}
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_POSTCODE = re.compile(r"^\d{5}$")
_NAF = re.compile(r"^(\d{2})\.?(\d{2})([A-Z])$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(REF_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRUE = {"true", "1", "yes", "oui"}
_FALSE = {"false", "0", "no", "non", ""}


class ImportFileError(Exception):
    """The file as a whole cannot be imported: unreadable, not UTF-8, unknown
    format, or a required header column missing; raised before anything is
    written (except for a CSV record the csv module cannot read, past which
    nothing more is)."""


class _Invalid(ValueError):
    pass


# --- one value ------------------------------------------------------------------


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:39] + "…")


def _text(value: str) -> str:
    # Line breaks and runs of spaces from spreadsheets become single spaces.
    value = " ".join(unicodedata.normalize("NFC", value).split())
    if len(value) > TEXT_MAX:
        raise _Invalid(f"longer than {TEXT_MAX} characters")
    if _CONTROL.search(value):
        raise _Invalid("contains control characters")
    return value


def _postcode(value: str) -> str:
    if not _POSTCODE.match(value):
        raise _Invalid(f"{_show(value)} is not a French postcode (5 digits)")
    return value


def _siret(value: str) -> str:
    compact = value.replace(" ", "")
    if not is_valid_siret(compact):
        raise _Invalid(f"{_show(value)} is not a valid SIRET (14 digits with a valid Luhn key)")
    return compact


def _reference(value: str) -> str:
    # An offer's or a formation's id, as `targets.make_target` checks it (the
    # text is already stripped).
    if _ID.match(value):
        return value
    raise _Invalid(
        f"{_show(value)} is not a valid id (letters, digits and . _ - #, "
        "starting with a letter or digit, at most 100 characters)"
    )


def _email(value: str) -> str:
    # Stored as its identity (case-folded): it is the key of the contact's
    # opt-outs and bounces.
    try:
        return email_identity(normalise_email(value))
    except InvalidValue as exc:
        raise _Invalid(f"{_show(value)} is {exc.reason}") from None


def _phone(value: str) -> str:
    try:
        return normalise_phone(value)
    except InvalidValue as exc:
        raise _Invalid(f"{_show(value)} is {exc.reason}") from None


def _date(value: str) -> dt.date:
    try:
        if not _DATE.match(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise _Invalid(f"{_show(value)} is not a date in YYYY-MM-DD form") from None


def _status(value: str) -> str:
    if value.lower() not in {"active", "closed"}:
        raise _Invalid(f"{_show(value)} is not a status (active or closed)")
    return value.lower()


def _score(value: str) -> float:
    try:
        # French spreadsheets write 0,75.
        score = float(value.replace(",", "."))
    except ValueError:
        score = -1.0
    if not 0.0 <= score <= 1.0:
        raise _Invalid(f"{_show(value)} is not a number from 0 to 1")
    return score


def _naf(value: str) -> str:
    match = _NAF.match(value.upper())
    if not match:
        raise _Invalid(f"{_show(value)} is not a NAF code (like 4520A or 45.20A)")
    return "".join(match.groups())


def _flag(value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _Invalid(f"{_show(value)} is not true or false")


# --- one kind of file -------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One column of an import file; `parse` gets the stripped, non-empty text."""

    name: str
    parse: Callable[[str], Any]
    # `header`: the column must be in the file; `value`: it must not be empty.
    header: bool = True
    value: bool = True


@dataclass(frozen=True)
class Spec:
    """The columns of one kind of import file and where they are stored."""

    target: TargetSpec
    columns: tuple[Field, ...]

    @property
    def table(self) -> sa.Table:
        return self.target.table

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def opt_out(self) -> str | None:
        """The contacts column an opted-out flag sets; None: refused."""
        return self.target.opt_out_column

    @property
    def stored(self) -> tuple[Field, ...]:
        return tuple(c for c in self.columns if c.name not in _FLAGS)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.header)


_FLAGS = ("contact_opted_out", "contact_bounced")
_CONTACT = (
    Field("contact_email", _email, value=False),
    Field("contact_opted_out", _flag, header=False, value=False),
    Field("contact_bounced", _flag, header=False, value=False),
)

_COLUMNS: dict[str, tuple[Field, ...]] = {
    "formation": (
        Field("cle_ministere_educatif", _reference),
        Field("title", _text),
        Field("address", _text),
        Field("postcode", _postcode),
        Field("city", _text),
        Field("cfa_siret", _siret),
        Field("cfa_name", _text),
        Field("cfa_address", _text),
        Field("cfa_phone", _phone),
        *_CONTACT,
    ),
    "offer": (
        Field("offer_id", _reference),
        Field("title", _text),
        Field("siret", _siret),
        Field("company_name", _text),
        Field("address", _text),
        Field("postcode", _postcode),
        Field("city", _text),
        Field("status", _status),
        Field("posted_on", _date),
        Field("expires_on", _date, header=False, value=False),
        *_CONTACT,
    ),
    "company": (
        Field("siret", _siret),
        Field("name", _text),
        Field("address", _text),
        Field("postcode", _postcode),
        Field("city", _text),
        Field("naf_code", _naf),
        Field("hiring_score", _score),
        *_CONTACT,
    ),
}
# One import file kind per target kind: `formations`, `offers`, `companies`.
SPECS: dict[str, Spec] = {t.file_kind: Spec(t, _COLUMNS[t.name]) for t in TARGETS.values()}


@dataclass
class _Row:
    values: dict[str, Any]
    opted_out: bool
    bounced: bool


# A column's checks see the same text again and again in one file (a company's
# SIRET, name and contact on each of its offers, a city, a title), and each check
# is a function of the text alone: its answer (or its refusal) is kept per import,
# up to this many texts per column, then forgotten and counted again.
_MEMO_MAX = 100_000


_EMPTY = object()


def _check(parse: Callable[[str], Any], raw: str) -> Any:
    """A column's answer for a value as read: _EMPTY, the refusal, or the value."""
    text = raw.strip()
    if not text:
        return _EMPTY
    try:
        return parse(text)
    except _Invalid as exc:
        # Kept in the column's memory: without the frames it was raised in.
        return exc.with_traceback(None)


class _Parser:
    """The rule of one kind of row, for one import: `_parse_row` with each
    column's answers memoised."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.required = frozenset(spec.required)
        # The key column is not memoised: a file names each reference once.
        self.columns: list[tuple[str, Callable[[str], Any], bool, Any, dict[str, Any] | None]] = [
            (
                c.name,
                c.parse,
                c.value,
                False if c.name in _FLAGS else None,
                None if c.name == spec.key else {},
            )
            for c in spec.columns
        ]

    def __call__(self, record: Mapping[str, str]) -> _Row | str:
        spec = self.spec
        if not self.required <= record.keys():
            missing = [c.name for c in spec.columns if c.header and c.name not in record]
            return f"missing field(s): {', '.join(missing)}"
        values: dict[str, Any] = {}
        problems: list[str] = []
        memo: dict[str, Any] | None
        for name, parse, needed, empty, memo in self.columns:
            raw = record.get(name, "")
            if memo is None:
                value = _check(parse, raw)
            else:
                value = memo.get(raw, memo)
                if value is memo:
                    value = _check(parse, raw)
                    if len(memo) >= _MEMO_MAX:
                        memo.clear()
                    memo[raw] = value
            if value is _EMPTY:
                if needed:
                    problems.append(f"{name}: required")
                values[name] = empty
            elif isinstance(value, _Invalid):
                problems.append(f"{name}: {value}")
            else:
                values[name] = value
        opted_out = bool(values.pop("contact_opted_out", False))
        bounced = bool(values.pop("contact_bounced", False))
        if opted_out and spec.opt_out is None:
            problems.append(
                "contact_opted_out: offers have no opt-out; close the offer "
                "(status closed) or opt the company out in the companies file"
            )
        if (opted_out or bounced) and not record.get("contact_email", "").strip():
            problems.append("contact_opted_out/contact_bounced: set but there is no contact_email")
        if problems:
            return "; ".join(problems)
        return _Row(values, opted_out, bounced)


def _parse_row(spec: Spec, record: Mapping[str, str]) -> _Row | str:
    """One row checked against its kind's rule, nothing remembered."""
    return _Parser(spec)(record)


@dataclass
class _Batch:
    """The rows of one batch that passed every check, by column: each column of
    the kind (its stored values, the contact flags as booleans) as a list in
    the file's order; `lines` their line numbers."""

    lines: list[int]
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.lines)


def _learn(
    parse: Callable[[str], Any],
    needed: bool,
    empty: Any,
    texts: Iterable[str],
    known: dict[str, Any],
    refused: set[str],
) -> None:
    """Each text's value in `known` (that of an empty text: `empty`), the texts
    refused in `refused` too (an empty one when `needed`): `_check`'s answers."""
    texts = list(texts)
    stripped = list(map(str.strip, texts))
    if all(stripped):
        # The usual case, no text refused: one call of the check per text.
        try:
            known.update(zip(texts, map(parse, stripped), strict=True))
            return
        except _Invalid:
            pass
    for text in texts:
        value = _check(parse, text)
        if value is _EMPTY:
            if needed:
                refused.add(text)
            value = empty
        elif isinstance(value, _Invalid):
            refused.add(text)
            value = None
        known[text] = value


class _BatchParser:
    """The rule of one kind of row applied to a batch of rows column by column,
    for one import: each column's answers kept per text as read (the key
    column's only within its batch), a column looked at as a whole (its
    distinct texts, those not seen yet checked). A row with any problem is
    handed to the row rule (`_Parser`), which words its refusal; a valid row
    whose key an earlier row already had is refused as a duplicate."""

    def __init__(self, spec: Spec, header: Sequence[str]) -> None:
        self.spec = spec
        self.rule = _Parser(spec)
        self.header = list(header)
        self.width = len(header)
        where = {name: i for i, name in enumerate(self.header) if name}
        # Per column: name, check, needed, the value of an empty text, where it
        # is in the row (None: not in the file), and its memory (text → value,
        # texts refused), None for the key column (a file names each reference once).
        self.columns: list[
            tuple[str, Callable[[str], Any], bool, Any, int | None, tuple[dict[str, Any], set[str]] | None]
        ] = [
            (
                c.name,
                c.parse,
                c.value,
                False if c.name in _FLAGS else None,
                where.get(c.name),
                None if c.name == spec.key else ({}, set()),
            )
            for c in spec.columns
        ]
        self.email_at = where.get("contact_email")
        # The line of each key accepted so far.
        self.seen: dict[Any, int] = {}

    def __call__(self, lines: list[int], rows: list[list[str]]) -> tuple[_Batch, list[tuple[int, str]]]:
        """`rows` all as wide as the header, `lines` their line numbers: the rows
        accepted, and the refused ones by line with the reason."""
        count = len(rows)
        cells = list(zip(*rows, strict=True)) if rows else [() for _ in self.header]
        columns: dict[str, list[Any]] = {}
        problems: set[int] = set()
        for name, parse, needed, empty, at, memory in self.columns:
            if at is None:
                if needed:
                    problems.update(range(count))
                columns[name] = [empty] * count
                continue
            column = cells[at]
            known: dict[str, Any]
            refused: set[str]
            if memory is None:
                known, refused = {}, set()
                _learn(parse, needed, empty, column, known, refused)
                values = list(map(known.__getitem__, column))
            else:
                known, refused = memory
                try:  # the usual case past the first batches: every text seen already
                    values = list(map(known.__getitem__, column))
                except KeyError:
                    texts = set(column)
                    new = texts.difference(known)
                    if len(known) + len(new) > _MEMO_MAX:
                        known.clear()
                        refused.clear()
                        new = texts
                    _learn(parse, needed, empty, new, known, refused)
                    values = list(map(known.__getitem__, column))
            if refused and not refused.isdisjoint(column):
                problems.update(i for i, text in enumerate(column) if text in refused)
            columns[name] = values
        opted, bounced = columns["contact_opted_out"], columns["contact_bounced"]
        if True in opted or True in bounced:
            # A flag needs an address, and offers have no opt-out.
            emails = cells[self.email_at] if self.email_at is not None else ("",) * count
            no_opt_out = self.spec.opt_out is None
            problems.update(
                i
                for i in range(count)
                if (opted[i] and no_opt_out) or ((opted[i] or bounced[i]) and not emails[i].strip())
            )
        refusals: list[tuple[int, str]] = []
        if problems:
            for i in sorted(problems):
                answer = self.rule(dict(zip(self.header, rows[i], strict=True)))
                assert isinstance(answer, str), "the batch and the row rule disagree"
                refusals.append((lines[i], answer))
            keep = [i for i in range(count) if i not in problems]
            lines = [lines[i] for i in keep]
            columns = {name: [values[i] for i in keep] for name, values in columns.items()}
        keys = columns[self.spec.key]
        seen = self.seen
        if len(set(keys)) == len(keys) and seen.keys().isdisjoint(keys):
            seen.update(zip(keys, lines, strict=True))
        else:
            keep = []
            for i, (key, line) in enumerate(zip(keys, lines, strict=True)):
                if key in seen:
                    refusals.append((line, f"{self.spec.key} {_show(key)} is already on line {seen[key]}"))
                else:
                    seen[key] = line
                    keep.append(i)
            lines = [lines[i] for i in keep]
            columns = {name: [values[i] for i in keep] for name, values in columns.items()}
            refusals.sort()
        return _Batch(lines, columns), refusals


# --- reading files ----------------------------------------------------------------


def _count_lines(path: Path) -> int:
    """Lines in the file (the progress display's total); refuses non-UTF-8 text
    before anything is written."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    last = b"\n"
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    line = lines + chunk[: exc.start].count(b"\n") + 1
                    raise ImportFileError(
                        f"{path.name} is not UTF-8 text (line {line}): save it as UTF-8 "
                        "(in a spreadsheet, “CSV UTF-8”)"
                    ) from None
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ImportFileError(f"{path.name} ends in the middle of a UTF-8 character") from None
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return lines + (last != b"\n")


# A batch as read: the lines and cells of its rows (each as wide as the header),
# and the records refused as read (by line, with the reason).
_Read = tuple[list[int], list[list[str]], list[tuple[int, str]]]


def _csv_batches(
    handle: TextIO, spec: Spec, path: Path, ignored: list[str]
) -> tuple[list[str], Iterator[_Read]]:
    header_line = handle.readline()
    if not header_line.strip():
        raise ImportFileError(f"{path.name} is empty: the first line must name the columns")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    header = [name.strip().lower() for name in next(csv.reader([header_line], delimiter=delimiter))]
    # Spreadsheets leave unnamed trailing columns; those are ignored.
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise ImportFileError(f"{path.name}: column(s) named twice: {', '.join(duplicates)}")
    missing = [name for name in spec.required if name not in header]
    if missing:
        raise ImportFileError(
            f"{path.name} is missing required column(s): {', '.join(missing)} "
            f"(found: {', '.join(header)}; delimiter {delimiter!r})"
        )
    known = {c.name for c in spec.columns}
    ignored.extend(name for name in header if name and name not in known)
    return header, _csv_rows(
        csv.reader(handle, delimiter=delimiter), header.index(spec.key), len(header), path
    )


def _csv_rows(reader: Any, key_at: int, width: int, path: Path) -> Iterator[_Read]:
    # The header was line 1; `line_num` counts the lines the reader has consumed
    # (a record may span several).
    previous = 0
    while True:
        rows: list[list[str]] = []
        ends: list[int] = []
        try:
            for cells in itertools.islice(reader, BATCH_SIZE):
                rows.append(cells)
                ends.append(reader.line_num)
        except csv.Error as exc:
            raise ImportFileError(
                f"{path.name}, line {(ends[-1] if ends else previous) + 2}: not readable as CSV ({exc}); "
                "the rows before it were processed"
            ) from None
        if not rows:
            return
        lines = [previous + 2, *(end + 2 for end in ends[:-1])]
        previous = ends[-1]
        # The usual batch: every row as wide as the header, none blank (a blank
        # row's key is blank).
        if set(map(len, rows)) == {width} and all(map(str.strip, [cells[key_at] for cells in rows])):
            yield lines, rows, []
            continue
        kept_lines, kept, refused = [], [], []
        for line, cells in zip(lines, rows, strict=True):
            if not "".join(cells).strip():
                continue
            if len(cells) != width:
                refused.append(
                    (
                        line,
                        f"{len(cells)} values where the header has {width} columns "
                        "(check the delimiter and the quotes)",
                    )
                )
                continue
            kept_lines.append(line)
            kept.append(cells)
        yield kept_lines, kept, refused


def _jsonl_batches(handle: TextIO, spec: Spec, ignored: list[str]) -> tuple[list[str], Iterator[_Read]]:
    header = [c.name for c in spec.columns]
    return header, _jsonl_rows(handle, spec, header, ignored)


def _jsonl_rows(handle: TextIO, spec: Spec, header: list[str], ignored: list[str]) -> Iterator[_Read]:
    rule = _Parser(spec)
    lines: list[int] = []
    rows: list[list[str]] = []
    refused: list[tuple[int, str]] = []
    for line, record in _jsonl_records(handle, spec, ignored):
        if isinstance(record, str):
            refused.append((line, record))
        elif not rule.required <= record.keys():
            refused.append((line, str(rule(record))))  # names the missing fields
        else:
            lines.append(line)
            rows.append([record.get(name, "") for name in header])
        if len(lines) + len(refused) >= BATCH_SIZE:
            yield lines, rows, refused
            lines, rows, refused = [], [], []
    if lines or refused:
        yield lines, rows, refused


def _jsonl_records(
    handle: TextIO, spec: Spec, ignored: list[str]
) -> Iterator[tuple[int, Mapping[str, str] | str]]:
    known = {c.name for c in spec.columns}
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, f"not valid JSON ({exc.msg}, column {exc.colno})"
            continue
        if not isinstance(data, dict):
            yield line, "not a JSON object"
            continue
        record: dict[str, str] = {}
        wrong: list[str] = []
        for name, value in data.items():
            name = str(name).strip().lower()
            if name not in known:
                if name not in ignored:
                    ignored.append(name)
            elif value is None:
                record[name] = ""
            elif isinstance(value, bool):
                record[name] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                record[name] = str(value)
            else:
                wrong.append(f"{name}: must be a string, a number or a boolean")
        yield line, "; ".join(wrong) if wrong else record


# --- writing ----------------------------------------------------------------------


def _db_value(value: Any, dialect: str) -> Any:
    # The raw drivers skip SQLAlchemy's type processing; store what it would.
    if dialect == "sqlite":
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, dt.date):
            return value.isoformat()
    return value


def _stored_names(spec: Spec) -> list[str]:
    """The columns an import writes, in the order of its statements' values."""
    return [c.name for c in spec.stored] + ["updated_at"]


def _upsert_sql(spec: Spec, rows: str) -> str:
    """The upsert of `rows`: `VALUES …` or a `SELECT` of the stored columns."""
    names = _stored_names(spec)
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != spec.key)
    return (
        f"INSERT INTO {spec.table.name} ({', '.join(names)}) {rows} "
        f"ON CONFLICT ({spec.key}) DO UPDATE SET {updates}"
    )


def _values(width: int, rows: int) -> str:
    row = f"({', '.join('?' * width)})"
    return f"VALUES {', '.join([row] * rows)}"


@functools.cache
def _sqlite_variables() -> int:
    """How many parameters one SQLite statement may have (the library's limit)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as connection:
        return connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


@dataclass
class ImportReport:
    """What an import did (or, with `dry_run`, would do)."""

    kind: str
    total: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False
    opted_out: int = 0
    bounced: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    # Rows the file would open that stay closed, by reason: what the service
    # decided (an opt-out, the applications cap) outlives any import.
    kept_closed: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        verb = "would be " if self.dry_run else ""
        lines = [
            f"{self.kind} (dry run: nothing was written)" if self.dry_run else self.kind,
            f"  rows read: {self.total}",
            f"  {verb}inserted: {self.inserted}",
            f"  {verb}updated: {self.updated}",
            f"  unchanged: {self.unchanged}",
            f"  rejected: {len(self.rejected)}",
        ]
        if self.opted_out or self.bounced:
            lines.append(
                f"  contacts {verb}newly marked: {self.opted_out} opted out, {self.bounced} bouncing"
            )
        if self.kept_closed:
            reasons = ", ".join(f"{KEPT_CLOSED[r]}: {n}" for r, n in sorted(self.kept_closed.items()))
            lines.append(f"  left closed by the service: {sum(self.kept_closed.values())} ({reasons})")
        if self.ignored_columns:
            lines.append(f"  ignored unknown columns: {', '.join(self.ignored_columns)}")
        if self.rejected:
            lines.append("rejected rows:")
            lines.extend(f"  line {n}: {reason}" for n, reason in self.rejected[:SUMMARY_MAX_REJECTED])
            if len(self.rejected) > SUMMARY_MAX_REJECTED:
                lines.append(f"  … and {len(self.rejected) - SUMMARY_MAX_REJECTED} more")
        return "\n".join(lines)


class _Writer:
    def __init__(
        self,
        connection: Any,
        dialect: str,
        spec: Spec,
        report: ImportReport,
        max_offer_applications: int | None,
    ) -> None:
        self.connection = connection
        self.max_offer_applications = max_offer_applications
        self.dialect = dialect
        self.spec = spec
        self.report = report
        self.stored = _stored_names(spec)[:-1]
        self.key_at = self.stored.index(spec.key)
        # SQLite stores a date as its ISO text (as SQLAlchemy's Date does).
        self.dates = {c.name for c in spec.stored if c.parse is _date} if dialect == "sqlite" else set()
        # The stored rows of a batch, as the driver gives them: to tell inserts,
        # updates and unchanged rows apart and, for offers, what keeps one closed
        # (one read).
        kept = ["closed_reason", "application_count"] if spec.opt_out is None else []
        where = "= ANY($1)" if dialect == "postgresql" else "IN (SELECT value FROM json_each(?))"
        self.select = (
            f"SELECT {', '.join(self.stored + kept)} FROM {spec.table.name} WHERE {spec.key} {where}"
        )
        # SQLite's multi-row upserts, by number of rows.
        self.statements: dict[int, str] = {}
        # A dry run writes nothing, so remembers what it would have marked.
        self.marked: set[tuple[str, str]] = set()

    async def write(self, batch: _Batch) -> AsyncIterator[None]:
        """Writes `batch` in one transaction, stopping once (the `yield`) while
        its rows are being written: on SQLite in aiosqlite's thread, which
        releases Python's lock while SQLite writes, on PostgreSQL in the
        server, so the caller reads and checks the next batch meanwhile."""
        async with self.connection.transaction():
            columns = self._columns(batch)
            changed, existing = await self._classify(batch, columns)
            await self._count_kept_closed(batch, existing)
            contacts = await self._contacts(batch)
            if self.report.dry_run:
                return
            marked_at = dt.datetime.now(dt.UTC)
            if changed is None or changed:
                if changed is not None:
                    columns = [[values[i] for i in changed] for values in columns]
                upsert = asyncio.ensure_future(self._upsert(columns, _db_value(marked_at, self.dialect)))
                await asyncio.sleep(0)  # the statement handed to the driver
                try:
                    yield
                finally:
                    await upsert
            # Few rows carry a flag: one statement each is fine here.
            for email, opt, bounce in contacts:
                marks: dict[str, Any] = {}
                if opt and self.spec.opt_out:
                    marks[self.spec.opt_out] = marked_at
                if bounce:
                    marks.update(bounced_at=marked_at, bounce_reason=BOUNCE_REASON)
                await contact_marks.mark(self.connection, email, marks, overwrite=False)

    async def _upsert(self, columns: list[list[Any]], now: Any) -> None:
        """Writes the rows of `columns` (the stored columns' values), `now` their `updated_at`."""
        count = len(columns[0])
        if self.dialect == "postgresql":
            # COPY into a temporary table emptied at each commit, then one
            # upsert from it: a third less time than executemany's statement
            # per row, and a fraction of its CPU here.
            raw = self.connection.raw_connection
            table, names = self.spec.table.name, _stored_names(self.spec)
            staging, listed = f"directory_import_{table}", ", ".join(names)
            await raw.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS "
                f"AS SELECT {listed} FROM {table} WITH NO DATA"
            )
            records = list(zip(*columns, itertools.repeat(now, count), strict=True))
            await raw.copy_records_to_table(staging, records=records, columns=names)
            await raw.execute(_upsert_sql(self.spec, f"SELECT {listed} FROM {staging}"))
            return
        # On SQLite, rows by the hundred in one statement (as many as its
        # parameters allow): bound in one call and written in one step, where
        # executemany binds and steps row by row.
        raw = self.connection.raw_connection
        width = len(columns) + 1
        per = max(1, _sqlite_variables() // width)
        for start in range(0, count, per):
            rows = min(per, count - start)
            sql = self.statements.get(rows)
            if sql is None:
                sql = self.statements[rows] = _upsert_sql(self.spec, _values(width, rows))
            # The parameters row after row, filled column by column.
            params = [now] * (rows * width)
            for at, values in enumerate(columns):
                params[at::width] = values[start : start + rows]
            await raw.execute_fetchall(sql, params)

    def _columns(self, batch: _Batch) -> list[list[Any]]:
        """The batch's stored columns, as stored, in the order of the upsert."""
        columns = []
        for name in self.stored:
            values = batch.columns[name]
            if name in self.dates:
                stored = {value: _db_value(value, self.dialect) for value in set(values)}
                values = list(map(stored.__getitem__, values))
            columns.append(values)
        return columns

    async def _fetch(self, keys: list[Any]) -> list[Any]:
        backend = self.connection._connection
        argument: Any = keys if self.dialect == "postgresql" else json.dumps(keys)
        async with self.connection._query_lock:
            return list(await backend.fetch_tuples(self.select, [argument]))

    async def _classify(
        self, batch: _Batch, columns: list[list[Any]]
    ) -> tuple[list[int] | None, dict[Any, tuple[Any, ...]]]:
        """The rows to write, new or changed (by index; None: every one), and
        the stored rows of the batch by key."""
        existing = {
            record[self.key_at]: tuple(record) for record in await self._fetch(batch.columns[self.spec.key])
        }
        report = self.report
        if not existing:
            report.inserted += len(batch)
            return None, existing
        width, key_at = len(self.stored), self.key_at
        changed = []
        for index, row in enumerate(zip(*columns, strict=True)):
            old = existing.get(row[key_at])
            if old is None:
                report.inserted += 1
                changed.append(index)
            elif old[:width] != row:
                report.updated += 1
                changed.append(index)
            else:
                report.unchanged += 1
        return changed, existing

    async def _count_kept_closed(self, batch: _Batch, existing: dict[Any, tuple[Any, ...]]) -> None:
        """Counts the rows that stay closed whatever the file says: an offer its
        recruiter closed or that reached the applications cap (neither column is
        imported), a company or formation whose contact opted out (an import
        never clears it)."""
        kept = self.report.kept_closed
        if self.spec.opt_out is None:
            if not existing:
                return
            width, cap = len(self.stored), self.max_offer_applications
            for key, status in zip(batch.columns[self.spec.key], batch.columns["status"], strict=True):
                record = existing.get(key) if status == "active" else None
                if record is None:
                    continue
                reason, count = record[width], record[width + 1]
                if reason is None and cap is not None and count >= cap:
                    reason = "applications_cap"
                if reason is not None:
                    kept[reason] = kept.get(reason, 0) + 1
            return
        emails = [email for email in batch.columns["contact_email"] if email]
        if not emails:
            return
        contacts = tables.contacts
        query = sa.select(contacts.c.email).where(
            contacts.c.email.in_(sorted(set(emails))), contacts.c[self.spec.opt_out].is_not(None)
        )
        # Not the opt-outs this very import recorded: those are "newly marked".
        out = {r._mapping["email"] for r in await self.connection.fetch_all(query)}
        out -= {email for email, what in self.marked if what == "opt"}
        count = sum(1 for email in emails if email in out)
        if count:
            kept[CLOSED_BY_RECRUITER] = kept.get(CLOSED_BY_RECRUITER, 0) + count

    async def _contacts(self, batch: _Batch) -> list[tuple[str, bool, bool]]:
        opted, bounced = batch.columns["contact_opted_out"], batch.columns["contact_bounced"]
        if True not in opted and True not in bounced:
            return []
        wanted: dict[str, tuple[bool, bool]] = {}
        for email, row_opt, row_bounce in zip(batch.columns["contact_email"], opted, bounced, strict=True):
            if row_opt or row_bounce:
                opt, bounce = wanted.get(email, (False, False))
                wanted[email] = (opt or row_opt, bounce or row_bounce)
        contacts = tables.contacts
        opt_column = contacts.c[self.spec.opt_out or "company_opt_out_at"]
        query = sa.select(contacts.c.email, opt_column.label("opt"), contacts.c.bounced_at).where(
            contacts.c.email.in_(sorted(wanted))
        )
        current = {
            r._mapping["email"]: (r._mapping["opt"] is not None, r._mapping["bounced_at"] is not None)
            for r in await self.connection.fetch_all(query)
        }
        news = []
        for email, (opt, bounce) in wanted.items():
            had_opt, had_bounce = current.get(email, (False, False))
            new_opt = opt and not had_opt and (email, "opt") not in self.marked
            new_bounce = bounce and not had_bounce and (email, "bounce") not in self.marked
            if new_opt:
                self.marked.add((email, "opt"))
                self.report.opted_out += 1
            if new_bounce:
                self.marked.add((email, "bounce"))
                self.report.bounced += 1
            if new_opt or new_bounce:
                news.append((email, new_opt, new_bounce))
        return news


# --- entry points -----------------------------------------------------------------


async def import_file(
    database: Database,
    kind: str,
    path: str | Path,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    max_offer_applications: int | None = None,
) -> ImportReport:
    """Import a CSV (header row, `,` or `;`) or JSON Lines file of `kind`
    (formations, offers or companies): every row is checked, bad rows are
    reported by line, the others upserted by reference in batches of
    BATCH_SIZE, one transaction each. `progress(done, total)` is called after
    every batch and at the end with done == total. With
    `max_offer_applications`, the summary also counts the offers the file
    marks active that stay closed by their applications cap.

    Raises ImportFileError when the file as a whole is unusable; nothing is
    written then."""
    spec = SPECS.get(kind)
    if spec is None:
        raise ImportFileError(f"unknown kind {kind!r}: formations, offers or companies")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _CSV_SUFFIXES | _JSONL_SUFFIXES:
        raise ImportFileError(f"{path.name}: unknown format {suffix or '(no extension)'}; use .csv or .jsonl")
    lines = _count_lines(path)
    total_estimate = max(lines - 1, 0) if suffix in _CSV_SUFFIXES else lines
    report = ImportReport(kind=kind, dry_run=dry_run)
    last_call = (-1, -1)
    # Blocking reads are fine here: an import is a command of its own (or the
    # demo load before serving), with nothing else waiting on its event loop.
    with path.open(encoding="utf-8-sig", newline="") as handle:  # noqa: ASYNC230
        header, batches = (
            _csv_batches(handle, spec, path, report.ignored_columns)
            if suffix in _CSV_SUFFIXES
            else _jsonl_batches(handle, spec, report.ignored_columns)
        )
        parse = _BatchParser(spec, header)
        async with database.connection() as connection:
            writer = _Writer(
                connection, migrations.dialect_of(database), spec, report, max_offer_applications
            )
            # The batch being written (its rows read by then), while the next is read.
            writing: tuple[AsyncIterator[None], int] | None = None
            try:
                for lines_read, rows, refused in batches:
                    report.total += len(rows) + len(refused)
                    batch, refusals = parse(lines_read, rows)
                    if refused or refusals:
                        report.rejected.extend(
                            sorted(refused + refusals) if refused and refusals else refused or refusals
                        )
                    if writing is not None:
                        await _finish(writing[0])
                        if progress:
                            last_call = (writing[1], max(total_estimate, writing[1]))
                            progress(*last_call)
                    writing = None
                    if batch:
                        writing = (writer.write(batch), report.total)
                        await anext(writing[0], None)
                    elif progress:
                        last_call = (report.total, max(total_estimate, report.total))
                        progress(*last_call)
            except BaseException:
                # What was read before the failure is written, as if written before reading on.
                if writing is not None:
                    await _finish(writing[0])
                raise
            if writing is not None:
                await _finish(writing[0])
    if progress and last_call != (report.total, report.total):
        progress(report.total, report.total)
    return report


async def _finish(writing: AsyncIterator[None]) -> None:
    async for _ in writing:  # the batch's rows written, its transaction committed
        pass


def terminal_progress(done: int, total: int | None) -> None:
    """A one-line progress display on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return
    text = f"{done:,} / {total:,} rows ({min(100, done * 100 // total)}%)" if total else f"{done:,} rows"
    end = "\n" if total is not None and done >= total else ""
    sys.stderr.write("\r" + text + "\x1b[K" + end)
    sys.stderr.flush()


async def load_demo(database: Database) -> bool:
    """Import the fictional demo directory when the directory tables are all empty."""
    for target in TARGETS.values():
        if await database.fetch_val(sa.select(sa.func.count()).select_from(target.table)):
            return False
    for kind in SPECS:
        report = await import_file(database, kind, DEMO_DIR / f"{kind}.csv")
        if report.rejected:
            log.warning("demo %s: %s", kind, report.summary())
    return True
