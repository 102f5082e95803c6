"""The target directory: formations, offers and companies loaded from CSV or JSON
Lines files, every row checked, upserted by reference in batches.

A file describes whole rows: a column left out or a value left empty is stored
empty. Contact state (opt-out, bounce) is the exception: a file may set it, never
clear it, since an opt-out belongs to the contact who asked for it.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import functools
import json
import logging
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import sqlalchemy as sa
from databases import Database

from . import contacts as contact_marks
from . import migrations, tables
from .bundled import data_dir
from .targets import (
    CLOSED_BY_RECRUITER,
    CLOSED_FILLED,
    TARGETS,
    BadTarget,
    TargetSpec,
    is_valid_siret,
    make_target,
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


@functools.lru_cache(maxsize=65536)
def _siret(value: str) -> str:
    compact = value.replace(" ", "")
    if not is_valid_siret(compact):
        raise _Invalid(f"{_show(value)} is not a valid SIRET (14 digits with a valid Luhn key)")
    return compact


def _reference(kind: Literal["offer", "formation"]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            return make_target(kind, value).ref
        except BadTarget:
            raise _Invalid(
                f"{_show(value)} is not a valid id (letters, digits and . _ - #, "
                "starting with a letter or digit, at most 100 characters)"
            ) from None

    return parse


@functools.lru_cache(maxsize=65536)
def _email(value: str) -> str:
    # Cached: a recruiter or a CFA is the contact of many rows. Stored as its
    # identity (case-folded): it is the key of the contact's opt-outs and bounces.
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
        Field("cle_ministere_educatif", _reference("formation")),
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
        Field("offer_id", _reference("offer")),
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


def _csv_records(
    handle: TextIO, spec: Spec, path: Path, ignored: list[str]
) -> Iterator[tuple[int, Mapping[str, str] | str]]:
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
    reader = csv.reader(handle, delimiter=delimiter)
    # The header was line 1; `line_num` counts the lines the reader has consumed.
    previous = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(
                f"{path.name}, line {previous + 2}: not readable as CSV ({exc}); "
                "the rows before it were processed"
            ) from None
        line, previous = previous + 2, reader.line_num
        if not "".join(cells).strip():
            continue
        if len(cells) != len(header):
            yield (
                line,
                (
                    f"{len(cells)} values where the header has {len(header)} columns "
                    "(check the delimiter and the quotes)"
                ),
            )
            continue
        yield line, dict(zip(header, cells, strict=False))  # lengths checked above


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


def _placeholders(sql: str, dialect: str) -> str:
    if dialect != "postgresql":
        return sql
    counter = iter(range(1, 10_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


def _db_value(value: Any, dialect: str) -> Any:
    # The raw drivers skip SQLAlchemy's type processing; store what it would.
    if dialect == "sqlite":
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, dt.date):
            return value.isoformat()
    return value


async def _executemany(connection: Any, dialect: str, sql: str, params: Sequence[Sequence[Any]]) -> None:
    """The driver's own executemany: one prepared statement for the whole batch,
    where `databases` would compile and run one statement per row."""
    await connection.raw_connection.executemany(_placeholders(sql, dialect), params)


def _upsert_sql(spec: Spec) -> tuple[str, list[str]]:
    names = [c.name for c in spec.stored] + ["updated_at"]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != spec.key)
    sql = (
        f"INSERT INTO {spec.table.name} ({', '.join(names)}) "
        f"VALUES ({', '.join('?' for _ in names)}) "
        f"ON CONFLICT ({spec.key}) DO UPDATE SET {updates}"
    )
    return sql, names


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
        self.upsert_sql, self.upsert_names = _upsert_sql(spec)
        self.dates = [i for i, c in enumerate(spec.stored) if c.parse is _date]
        self.compared = [spec.table.c[c.name] for c in spec.stored]
        # Offers: what keeps one closed is read with the rows to compare (one read).
        self.kept_columns = (
            [tables.offers.c.closed_reason, tables.offers.c.application_count] if spec.opt_out is None else []
        )
        # A dry run writes nothing, so remembers what it would have marked.
        self.marked: set[tuple[str, str]] = set()

    async def write(self, batch: list[_Row]) -> None:
        async with self.connection.transaction():
            changed, existing = await self._classify(batch)
            await self._count_kept_closed(batch, existing)
            contacts = await self._contacts(batch)
            if self.report.dry_run:
                return
            marked_at = dt.datetime.now(dt.UTC)
            now = _db_value(marked_at, self.dialect)
            if changed:
                rows = [self._params(row, now) for row in changed]
                await _executemany(self.connection, self.dialect, self.upsert_sql, rows)
            # Few rows carry a flag: one statement each is fine here.
            for email, opt, bounce in contacts:
                marks: dict[str, Any] = {}
                if opt and self.spec.opt_out:
                    marks[self.spec.opt_out] = marked_at
                if bounce:
                    marks.update(bounced_at=marked_at, bounce_reason=BOUNCE_REASON)
                await contact_marks.mark(self.connection, email, marks, overwrite=False)

    def _params(self, row: _Row, now: Any) -> list[Any]:
        values = [row.values[name] for name in self.upsert_names[:-1]]
        for index in self.dates:
            values[index] = _db_value(values[index], self.dialect)
        values.append(now)
        return values

    async def _classify(self, batch: list[_Row]) -> tuple[list[_Row], dict[Any, Any]]:
        """The rows to write (new or changed), and the stored rows of the batch by key."""
        key = self.spec.table.c[self.spec.key]
        query = sa.select(*self.compared, *self.kept_columns).where(
            key.in_([row.values[key.name] for row in batch])
        )
        existing = {
            record._mapping[key.name]: record._mapping for record in await self.connection.fetch_all(query)
        }
        changed = []
        for row in batch:
            old = existing.get(row.values[key.name])
            if old is None:
                self.report.inserted += 1
                changed.append(row)
            elif any(old[c.name] != row.values[c.name] for c in self.compared):
                self.report.updated += 1
                changed.append(row)
            else:
                self.report.unchanged += 1
        return changed, existing

    async def _count_kept_closed(self, batch: list[_Row], existing: dict[Any, Any]) -> None:
        """Counts the rows that stay closed whatever the file says: an offer its
        recruiter closed or that reached the applications cap (neither column is
        imported), a company or formation whose contact opted out (an import
        never clears it)."""
        kept = self.report.kept_closed
        if self.spec.opt_out is None:
            for row in batch:
                record = existing.get(row.values["offer_id"]) if row.values["status"] == "active" else None
                if record is None:
                    continue
                reason, count = record["closed_reason"], record["application_count"]
                cap = self.max_offer_applications
                if reason is None and cap is not None and count >= cap:
                    reason = "applications_cap"
                if reason is not None:
                    kept[reason] = kept.get(reason, 0) + 1
            return
        emails = [row.values["contact_email"] for row in batch if row.values["contact_email"]]
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

    async def _contacts(self, batch: list[_Row]) -> list[tuple[str, bool, bool]]:
        wanted: dict[str, tuple[bool, bool]] = {}
        for row in batch:
            if row.opted_out or row.bounced:
                email = row.values["contact_email"]
                opt, bounce = wanted.get(email, (False, False))
                wanted[email] = (opt or row.opted_out, bounce or row.bounced)
        if not wanted:
            return []
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
    seen: dict[str, int] = {}
    last_call = (-1, -1)
    # Blocking reads are fine here: an import is a command of its own (or the
    # demo load before serving), with nothing else waiting on its event loop.
    with path.open(encoding="utf-8-sig", newline="") as handle:  # noqa: ASYNC230
        records = (
            _csv_records(handle, spec, path, report.ignored_columns)
            if suffix in _CSV_SUFFIXES
            else _jsonl_records(handle, spec, report.ignored_columns)
        )
        async with database.connection() as connection:
            writer = _Writer(
                connection, migrations.dialect_of(database), spec, report, max_offer_applications
            )
            parse = _Parser(spec)
            batch: list[_Row] = []
            for line, record in records:
                report.total += 1
                row = record if isinstance(record, str) else parse(record)
                if isinstance(row, _Row):
                    key = row.values[spec.key]
                    if key in seen:
                        row = f"{spec.key} {_show(key)} is already on line {seen[key]}"
                    else:
                        seen[key] = line
                if isinstance(row, str):
                    report.rejected.append((line, row))
                    continue
                batch.append(row)
                if len(batch) >= BATCH_SIZE:
                    await writer.write(batch)
                    batch = []
                    if progress:
                        last_call = (report.total, max(total_estimate, report.total))
                        progress(*last_call)
            if batch:
                await writer.write(batch)
    if progress and last_call != (report.total, report.total):
        progress(report.total, report.total)
    return report


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
