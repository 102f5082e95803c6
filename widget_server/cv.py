"""CV files: typed and checked by their structure, never by their name or their
first bytes alone, before anything is forwarded to a recruiter.

- PDF: starts with `%PDF-`, is not also a ZIP (a polyglot), and opens in a real
  PDF parser (pypdf) with at least one page and no JavaScript, launch action or
  embedded file. The parser runs in a child process with CPU and memory limits,
  killed on a deadline (`pdf_check`, started once and reused: `pdf_checkers`),
  so no file can hang the service.
- DOCX: a valid OOXML package read from the zip directory: `[Content_Types].xml`
  and `word/document.xml` present, the Word document content type declared, at
  most `DOCX_MAX_ENTRIES` entries and `DOCX_MAX_INFLATED_BYTES` once inflated
  (streamed, CRCs checked, never held in memory), no macro (`vbaProject.bin`,
  macro-enabled content types), ActiveX or executable part.
- Optionally, ClamAV through clamd (`CLAMD_URL`): a virus is refused; an
  unreachable scanner refuses the CV for now (503), never forwards it unscanned.

`check_cv` does what is cheap, with the other fields; `verify` does the rest,
asynchronously, before the request is stored.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
import zipfile
from dataclasses import dataclass

from . import clamd, pdf_checkers
from .problems import Problem
from .settings import Settings

log = logging.getLogger("widget_server.cv")

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"

DOCX_MAX_ENTRIES = 1000
DOCX_MAX_INFLATED_BYTES = 20 * 1024 * 1024
CONTENT_TYPES_MAX_BYTES = 256 * 1024
PDF_CHECK_SECONDS = 15.0

# Parts a CV has no business carrying: macros, ActiveX controls, OLE objects and
# programs, wherever they sit in the package.
_FORBIDDEN_PART = re.compile(
    r"(vbaproject\.bin|vbadata\.xml|(^|/)activex/|\.(bin|exe|dll|com|scr|pif|bat|cmd|msi|vbs|vbe|js|jse|"
    r"wsf|wsh|ps1|jar|hta|lnk|cpl|docm|dotm|xlsm|xltm|pptm|potm|ppsm|xlam|ppam|sldm)$)",
    re.IGNORECASE,
)
# In word/embeddings/, only pictures and macro-free Office files.
_EMBEDDING_OK = re.compile(r"\.(png|jpe?g|gif|emf|wmf|docx|xlsx|pptx)$", re.IGNORECASE)
_FORBIDDEN_CONTENT_TYPE = re.compile(
    rb"macroEnabled|vbaProject|vbaData|activeX|oleObject|msdownload|x-msdos-program", re.IGNORECASE
)


@dataclass(frozen=True)
class CV:
    filename: str
    content_type: str
    data: bytes


def refused(message: str, *, status: int = 415, headers: dict[str, str] | None = None) -> Problem:
    detail = "Le CV doit être un fichier PDF ou Word (.docx)." if status == 415 else message
    return Problem(
        status,
        detail,
        code="cv_type" if status == 415 else "cv_unverified",
        errors=[{"field": "cv", "message": message}],
        headers=headers,
    )


NOT_PDF_OR_DOCX = "Ce fichier n'est ni un PDF ni un document Word (.docx)."
PDF_UNREADABLE = (
    "Ce PDF n'a pas pu être ouvert : enregistrez votre CV à nouveau en PDF (Fichier › Exporter en PDF), "
    "puis renvoyez-le."
)
PDF_POLYGLOT = (
    "Ce fichier n'est pas un PDF ordinaire : enregistrez votre CV à nouveau en PDF, puis renvoyez-le."
)
PDF_ACTIVE = (
    "Ce PDF contient des scripts ou des fichiers joints, que nous ne transmettons pas : "
    "enregistrez votre CV à nouveau en PDF, puis renvoyez-le."
)
DOCX_INVALID = (
    "Ce document Word est incomplet ou abîmé : enregistrez-le à nouveau en .docx, ou envoyez-le en PDF."
)
DOCX_TOO_BIG = "Ce document Word est trop volumineux une fois ouvert : envoyez votre CV en PDF."
DOCX_ACTIVE = (
    "Ce document Word contient des macros ou des programmes, que nous ne transmettons pas : "
    "enregistrez-le en simple .docx, ou envoyez-le en PDF."
)
INFECTED = "Notre antivirus a signalé ce fichier : nous ne pouvons pas le transmettre."
SCANNER_DOWN = "Nous ne pouvons pas vérifier votre CV pour le moment : réessayez dans quelques minutes."
SCANNER_RETRY_SECONDS = 120


def check_cv(filename: str, data: bytes, max_bytes: int) -> CV:
    """Size (413) and type (415) from the content: what is quick to check."""
    if len(data) > max_bytes:
        raise Problem(
            413,
            f"Le CV doit faire au plus {max_bytes // (1024 * 1024)} Mo.",
            code="cv_too_large",
            errors=[
                {
                    "field": "cv",
                    "message": f"Ce fichier est trop lourd : {max_bytes // (1024 * 1024)} Mo au maximum.",
                }
            ],
        )
    if data.startswith(b"%PDF-"):
        if _is_zip(data):
            raise refused(PDF_POLYGLOT)
        content_type = PDF
    elif data.startswith(b"PK\x03\x04"):
        _check_docx(data)
        content_type = DOCX
    else:
        raise refused(NOT_PDF_OR_DOCX)
    return CV(safe_filename(filename or "cv", content_type), content_type, data)


def _is_zip(data: bytes) -> bool:
    # `is_zipfile` looks for a zip's end-of-directory record, wherever it is.
    return zipfile.is_zipfile(io.BytesIO(data))


def _check_docx(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            if len(entries) > DOCX_MAX_ENTRIES:
                raise refused(DOCX_TOO_BIG)
            # The directory's sizes first (no inflating), then the real ones.
            if sum(entry.file_size for entry in entries) > DOCX_MAX_INFLATED_BYTES:
                raise refused(DOCX_TOO_BIG)
            names = {entry.filename for entry in entries}
            if "[Content_Types].xml" not in names or "word/document.xml" not in names:
                raise refused(DOCX_INVALID)
            for entry in entries:
                name = entry.filename
                embedded = name.lower().startswith("word/embeddings/") and not entry.is_dir()
                if _FORBIDDEN_PART.search(name) or (embedded and not _EMBEDDING_OK.search(name)):
                    raise refused(DOCX_ACTIVE)
            content_types = archive.read("[Content_Types].xml")[:CONTENT_TYPES_MAX_BYTES]
            if _FORBIDDEN_CONTENT_TYPE.search(content_types):
                raise refused(DOCX_ACTIVE)
            if DOCX_MAIN.encode() not in content_types:
                raise refused(DOCX_INVALID)
            _inflate_within_limit(archive, entries)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError) as exc:
        # Not a zip, an unknown compression, encrypted entries, a CRC that does not match…
        raise refused(DOCX_INVALID) from exc


def _inflate_within_limit(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo]) -> None:
    """Inflates every entry in small pieces, counting: a directory may lie about
    sizes, and reading to the end checks each CRC."""
    total = 0
    for entry in entries:
        if entry.is_dir():
            continue
        with archive.open(entry) as part:
            while chunk := part.read(64 * 1024):
                total += len(chunk)
                if total > DOCX_MAX_INFLATED_BYTES:
                    raise refused(DOCX_TOO_BIG)


def safe_filename(name: str, content_type: str) -> str:
    stem = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].rsplit(".", 1)[0]
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")[:60] or "cv"
    return f"{stem}.{'pdf' if content_type == PDF else 'docx'}"


# --- the slower checks ------------------------------------------------------------


async def verify(cv: CV, settings: Settings) -> None:
    """Parses a PDF for real, then asks clamd when `CLAMD_URL` is set; raises the
    Problem to answer (415, or 503 while the scanner cannot answer)."""
    if cv.content_type == PDF:
        verdict = await inspect_pdf(cv.data)
        if verdict == "active":
            raise refused(PDF_ACTIVE)
        if verdict != "ok":
            raise refused(PDF_UNREADABLE)
    if settings.clamd_url:
        try:
            found = await clamd.scan(settings.clamd_url, cv.data)
        except clamd.ScannerUnavailable as exc:
            log.error("clamd unavailable, CV refused for now: %s", exc)
            raise refused(
                SCANNER_DOWN, status=503, headers={"Retry-After": str(SCANNER_RETRY_SECONDS)}
            ) from exc
        if found is not None:
            log.warning("clamd found %s in a CV; refused", found)
            raise refused(INFECTED)


async def inspect_pdf(data: bytes) -> str:
    """The verdict of a `pdf_check` child process (`pdf_checkers`): `ok`, `active`,
    `unreadable`, or `timeout` after `PDF_CHECK_SECONDS` (the child is killed)."""
    verdict = await pdf_checkers.checkers().check(data, PDF_CHECK_SECONDS)
    if verdict == "timeout":
        log.warning("a PDF took more than %.0f s to parse; refused", PDF_CHECK_SECONDS)
    return verdict
