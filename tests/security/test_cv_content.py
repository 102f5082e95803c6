"""CV content (#9 item 8): a CV is checked by its structure, not its first bytes.
A file that only starts with `%PDF-`, a PDF/ZIP polyglot, a PDF with scripts, a
DOCX with macros or programs, a DOCX that inflates to 200 MB: refused with 415
(API) or a field error (form page), never forwarded. The optional ClamAV scan is
tested against a fake clamd speaking INSTREAM on 127.0.0.1."""

from __future__ import annotations

import io
import os
import re
import signal
import socketserver
import struct
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from tests import seed
from tests.smtp_server import free_port
from tests.support import application, data_url, docx, make_settings
from widget_server import clamd, cv, pdf_checkers, tables
from widget_server.app import create_app
from widget_server.problems import Problem
from widget_server.settings import SettingsError

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"


def pdf(*, catalog: str = "", objects: tuple[str, ...] = (), comment: bytes = b"") -> bytes:
    """A one-page PDF written by hand (so the test does not depend on a PDF
    library's writer): `catalog` goes into the catalog, `objects` are numbered
    from 4, `comment` is a comment line near the top."""
    bodies = [
        f"<< /Type /Catalog /Pages 2 0 R {catalog}>>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        *objects,
    ]
    out = b"%PDF-1.4\n" + (b"%" + comment + b"\n" if comment else b"")
    offsets = []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


JAVASCRIPT_PDF = pdf(catalog="/OpenAction 4 0 R ", objects=("<< /S /JavaScript /JS (app.alert(1);) >>",))
LAUNCH_PDF = pdf(catalog="/OpenAction << /S /Launch /F (cmd.exe) >> ")
EMBEDDED_FILE_PDF = pdf(
    catalog="/Names << /EmbeddedFiles << /Names [(notes.exe) 4 0 R] >> >> ",
    objects=("<< /Type /Filespec /F (notes.exe) >>",),
)
NAMED_JAVASCRIPT_PDF = pdf(
    catalog="/Names << /JavaScript << /Names [(a) 4 0 R] >> >> ",
    objects=("<< /S /JavaScript /JS (app.alert(1);) >>",),
)


def zip_of(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def inflating_docx(megabytes: int) -> bytes:
    """A valid-looking DOCX whose one extra part inflates to `megabytes` MB of zeros."""
    buffer = io.BytesIO(docx())
    with (
        zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("word/media/padding.xml", "w", force_zip64=True) as part,
    ):
        block = b"\0" * (1024 * 1024)
        for _ in range(megabytes):
            part.write(block)
    return buffer.getvalue()


def post_cv(client: TestClient, data: bytes, filename: str = "cv.pdf") -> Any:
    key = seed.api_key(client)
    return client.post(
        "/api/v1/applications",
        json=application(cv=data_url(data), cv_filename=filename),
        headers={"Authorization": f"Bearer {key}"},
    )


def stored(client: TestClient) -> tuple[int, int]:
    requests = seed.fetch_all(client, sa.select(tables.contact_requests.c.id))
    files = seed.fetch_all(client, sa.select(tables.cv_files.c.request_id))
    return len(requests), len(files)


def assert_refused(response: Any, message: str, status: int = 415) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"] == [{"field": "cv", "message": message}]


@pytest.fixture
def offer_client(client: TestClient) -> TestClient:
    seed.offer(client)
    return client


# --- PDF --------------------------------------------------------------------------

POLYGLOT = seed.PDF + zip_of({"index.html": b"<script>alert(1)</script>"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"%PDF-1.7\n<html><body><script>alert(document.cookie)</script></body></html>\n", cv.PDF_UNREADABLE),
        (b"%PDF-1.4\n" + b"A" * 5000, cv.PDF_UNREADABLE),
        (seed.PDF[:200], cv.PDF_UNREADABLE),  # cut short: no page tree, no trailer
        (POLYGLOT, cv.PDF_POLYGLOT),
        (JAVASCRIPT_PDF, cv.PDF_ACTIVE),
        (NAMED_JAVASCRIPT_PDF, cv.PDF_ACTIVE),
        (LAUNCH_PDF, cv.PDF_ACTIVE),
        (EMBEDDED_FILE_PDF, cv.PDF_ACTIVE),
    ],
    ids=[
        "html-behind-magic",
        "no-structure",
        "truncated",
        "pdf-zip-polyglot",
        "open-action-javascript",
        "named-javascript",
        "launch",
        "embedded-file",
    ],
)
def test_a_pdf_that_is_not_a_plain_pdf_is_refused(
    offer_client: TestClient, data: bytes, message: str
) -> None:
    assert_refused(post_cv(offer_client, data), message)
    assert stored(offer_client) == (0, 0)


def test_a_real_pdf_with_pages_is_accepted(offer_client: TestClient) -> None:
    response = post_cv(offer_client, pdf(comment=b"CV de Lea"))
    assert response.status_code == 202, response.text
    assert stored(offer_client) == (1, 1)


def many_pages_pdf(pages: int = 20_000) -> bytes:
    """A valid PDF of `pages` pages (about 2 MB): pypdf takes seconds to list them."""
    kids = " ".join(f"{n + 3} 0 R" for n in range(pages))
    bodies = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>",
        *["<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"] * pages,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def checker_processes() -> set[int]:
    """The `pdf_check` children of this process that are running (not zombies)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == os.getpid() and state != "Z" and b"widget_server.pdf_check" in command:
            found.add(int(entry.name))
    return found


def test_a_pdf_parse_that_takes_too_long_is_cut_and_refused(
    offer_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = many_pages_pdf()
    # The deadline is made tiny, for a PDF that takes seconds to parse.
    monkeypatch.setattr(cv, "PDF_CHECK_SECONDS", 0.001)
    assert seed.run(offer_client, cv.inspect_pdf, slow) == "timeout"
    assert_refused(post_cv(offer_client, slow), cv.PDF_UNREADABLE)
    # The children that ran past the deadline were killed, not left parsing…
    assert checker_processes() == set(pdf_checkers.checkers().pids())
    # …and the next CV gets a new one.
    monkeypatch.undo()
    assert seed.run(offer_client, cv.inspect_pdf, seed.PDF) == "ok"


def test_the_pdf_checker_is_started_once_and_reused(offer_client: TestClient) -> None:
    # Each CV used to start a Python process of its own.
    seen: set[int] = set()
    for _ in range(3 * pdf_checkers.CHECKERS):
        assert seed.run(offer_client, cv.inspect_pdf, seed.PDF) == "ok"
        seen.update(pdf_checkers.checkers().pids())
    assert 1 <= len(seen) <= pdf_checkers.CHECKERS


def test_a_pdf_checker_killed_while_idle_is_replaced_without_failing_a_cv(offer_client: TestClient) -> None:
    seed.run(offer_client, cv.inspect_pdf, seed.PDF)
    for pid in pdf_checkers.checkers().pids():
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert seed.run(offer_client, cv.inspect_pdf, seed.PDF) == "ok"
    assert seed.run(offer_client, cv.inspect_pdf, JAVASCRIPT_PDF) == "active"


def test_the_pdf_parser_child_answers_for_each_kind_of_file(offer_client: TestClient) -> None:
    verdicts = [
        seed.run(offer_client, cv.inspect_pdf, data)
        for data in (seed.PDF, b"%PDF-1.7\n<html>", JAVASCRIPT_PDF, b"")
    ]
    assert verdicts == ["ok", "unreadable", "active", "unreadable"]


# --- DOCX -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (docx(extra_parts={"word/vbaProject.bin": b"\xd0\xcf\x11\xe0 macros"}), cv.DOCX_ACTIVE),
        (docx(extra_parts={"word/embeddings/oleObject1.bin": b"\xd0\xcf\x11\xe0 ole"}), cv.DOCX_ACTIVE),
        (docx(extra_parts={"word/embeddings/setup.exe": b"MZ\x90\x00"}), cv.DOCX_ACTIVE),
        (docx(extra_parts={"word/media/tool.dll": b"MZ\x90\x00"}), cv.DOCX_ACTIVE),
        (docx(extra_parts={"word/embeddings/script.txt": b"x"}), cv.DOCX_ACTIVE),
        (docx(extra_parts={"word/activeX/activeX1.xml": b"<ax/>"}), cv.DOCX_ACTIVE),
        (
            docx(
                content_types_extra='<Override PartName="/word/vbaData.xml" ContentType="application/'
                'vnd.ms-word.vbaData+xml"/>'
            ),
            cv.DOCX_ACTIVE,
        ),
        (
            zip_of(
                {
                    "[Content_Types].xml": b'<Types><Override PartName="/word/document.xml" ContentType="'
                    b'application/vnd.ms-word.document.macroEnabled.main+xml"/></Types>',
                    "word/document.xml": b"<w:document/>",
                }
            ),
            cv.DOCX_ACTIVE,
        ),
        (zip_of({"word/document.xml": b"<w:document/>"}), cv.DOCX_INVALID),  # no [Content_Types].xml
        (
            zip_of({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>"}),
            cv.DOCX_INVALID,
        ),
        (zip_of({"[Content_Types].xml": DOCX_MAIN.encode(), "content.xml": b"odt"}), cv.DOCX_INVALID),
        (b"PK\x03\x04broken", cv.DOCX_INVALID),
        (docx(extra_parts={f"word/media/image{i}.png": b"" for i in range(1001)}), cv.DOCX_TOO_BIG),
    ],
    ids=[
        "vba-project",
        "ole-object",
        "exe-embedding",
        "dll",
        "unknown-embedding",
        "activex",
        "vba-content-type",
        "macro-enabled-main",
        "no-content-types",
        "no-word-content-type",
        "not-word",
        "broken-zip",
        "too-many-entries",
    ],
)
def test_a_docx_that_is_not_a_plain_word_document_is_refused(
    offer_client: TestClient, data: bytes, message: str
) -> None:
    assert_refused(post_cv(offer_client, data, "cv.docx"), message)
    assert stored(offer_client) == (0, 0)


def test_a_docx_inflating_to_200_mb_is_refused_from_its_directory(
    offer_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def inflate(*args: Any) -> None:
        raise AssertionError("inflated: the directory's sizes should have been enough")

    monkeypatch.setattr(cv, "_inflate_within_limit", inflate)
    bomb = inflating_docx(200)
    assert len(bomb) < 1024 * 1024  # well within MAX_CV_BYTES
    assert_refused(post_cv(offer_client, bomb, "cv.docx"), cv.DOCX_TOO_BIG)


def test_a_docx_whose_directory_lies_about_sizes_is_refused() -> None:
    buffer = io.BytesIO(docx())
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/media/padding.xml", b"\0" * (25 * 1024 * 1024))
    # Declare 1 KB instead of 25 MB in the local header and the directory: the
    # sum of declared sizes passes; reading the part for real does not.
    real = struct.pack("<I", 25 * 1024 * 1024)
    lying = buffer.getvalue()
    assert lying.count(real) == 2
    lying = lying.replace(real, struct.pack("<I", 1024))
    with zipfile.ZipFile(io.BytesIO(lying)) as archive:
        assert sum(entry.file_size for entry in archive.infolist()) < cv.DOCX_MAX_INFLATED_BYTES
    with pytest.raises(Problem) as refused:
        cv.check_cv("cv.docx", lying, 3 * 1024 * 1024)
    assert refused.value.status == 415
    assert refused.value.errors == [{"field": "cv", "message": cv.DOCX_INVALID}]


def test_a_plain_docx_with_pictures_is_accepted(offer_client: TestClient) -> None:
    data = docx(extra_parts={"word/media/photo.png": b"\x89PNG", "word/embeddings/table.xlsx": b"PK"})
    response = post_cv(offer_client, data, "cv.docx")
    assert response.status_code == 202, response.text


def test_the_form_page_shows_the_cv_error_next_to_the_field(offer_client: TestClient) -> None:
    page = offer_client.get("/widget/v1/candidature", params={"offer_id": seed.OFFER_ID})
    fields = {
        **form_fields_of(page.text),
        "offer_id": seed.OFFER_ID,
        "last_name": "Moreau",
        "first_name": "Léa",
        "email": "lea.moreau@example.org",
        "phone": "06 12 34 56 78",
    }
    bad = docx(extra_parts={"word/vbaProject.bin": b"macros"})
    response = offer_client.post(
        "/widget/v1/candidature", data=fields, files={"cv": ("cv.docx", bad, "application/octet-stream")}
    )
    assert response.status_code == 415
    assert "contient des macros ou des programmes" in response.text
    assert 'value="Moreau"' in response.text  # the input is kept
    assert stored(offer_client) == (0, 0)


def form_fields_of(page: str) -> dict[str, str]:
    token = re.search(r'name="form_token" value="([^"]+)"', page)
    assert token is not None
    return {"form_token": token.group(1)}


# --- ClamAV through clamd ---------------------------------------------------------


class FakeClamd(socketserver.ThreadingTCPServer):
    """Speaks clamd's INSTREAM on 127.0.0.1: `stream: OK`, or FOUND for the EICAR
    test string; `mode` makes it answer an ERROR or never answer."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ClamdHandler)
        self.mode = "scan"
        self.streams: list[bytes] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.server_address[1]}"


class _ClamdHandler(socketserver.StreamRequestHandler):
    server: FakeClamd

    def handle(self) -> None:
        command = b""
        while not command.endswith(b"\0"):
            byte = self.rfile.read(1)
            if not byte:
                return
            command += byte
        assert command == b"zINSTREAM\0"
        data = b""
        while True:
            (size,) = struct.unpack("!I", self.rfile.read(4))
            if size == 0:
                break
            data += self.rfile.read(size)
        self.server.streams.append(data)
        if self.server.mode == "hang":
            self.server.release.wait(10)  # bounded; the client gives up well before
            return
        if self.server.mode == "error":
            self.wfile.write(b"INSTREAM size limit exceeded. ERROR\0")
        elif b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE" in data:
            self.wfile.write(b"stream: Eicar-Test-Signature FOUND\0")
        else:
            self.wfile.write(b"stream: OK\0")


@pytest.fixture
def fake_clamd() -> Iterator[FakeClamd]:
    server = FakeClamd()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def clamd_client(tmp_path: Path, url: str) -> TestClient:
    return TestClient(create_app(make_settings(tmp_path, CLAMD_URL=url)))


def test_a_clean_cv_is_scanned_whole_and_accepted(tmp_path: Path, fake_clamd: FakeClamd) -> None:
    with clamd_client(tmp_path, fake_clamd.url) as client:
        seed.offer(client)
        big = pdf(comment=b"x" * 200_000)  # several INSTREAM chunks
        assert post_cv(client, big).status_code == 202
        assert fake_clamd.streams == [big]
        assert post_cv(client, docx(), "cv.docx").status_code == 202
        assert stored(client) == (2, 2)


def stored_entry(data: bytes, name: str, content: bytes) -> bytes:
    """`data` (a zip) with `content` added uncompressed, as a scanner reads it."""
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("data", [pdf(comment=EICAR), stored_entry(docx(), "word/eicar.txt", EICAR)])
def test_a_cv_clamd_flags_is_refused(tmp_path: Path, fake_clamd: FakeClamd, data: bytes) -> None:
    with clamd_client(tmp_path, fake_clamd.url) as client:
        seed.offer(client)
        assert_refused(post_cv(client, data), cv.INFECTED)
        assert stored(client) == (0, 0)


def test_an_unreachable_clamd_refuses_for_now_with_503(tmp_path: Path) -> None:
    with clamd_client(tmp_path, f"tcp://127.0.0.1:{free_port()}") as client:
        seed.offer(client)
        response = post_cv(client, seed.PDF)
        assert_refused(response, cv.SCANNER_DOWN, status=503)
        assert response.headers["retry-after"] == str(cv.SCANNER_RETRY_SECONDS)
        assert stored(client) == (0, 0)


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_a_clamd_that_cannot_answer_refuses_for_now_with_503(
    tmp_path: Path, fake_clamd: FakeClamd, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    fake_clamd.mode = mode
    monkeypatch.setattr(clamd, "TIMEOUT_SECONDS", 0.5)
    with clamd_client(tmp_path, fake_clamd.url) as client:
        seed.offer(client)
        assert_refused(post_cv(client, seed.PDF), cv.SCANNER_DOWN, status=503)
        assert stored(client) == (0, 0)


def test_the_form_page_keeps_the_input_when_clamd_is_down(tmp_path: Path) -> None:
    with clamd_client(tmp_path, f"tcp://127.0.0.1:{free_port()}") as client:
        seed.offer(client)
        page = client.get("/widget/v1/candidature", params={"offer_id": seed.OFFER_ID})
        fields = {
            **form_fields_of(page.text),
            "offer_id": seed.OFFER_ID,
            "last_name": "Moreau",
            "first_name": "Léa",
            "email": "lea.moreau@example.org",
            "phone": "06 12 34 56 78",
        }
        response = client.post(
            "/widget/v1/candidature", data=fields, files={"cv": ("cv.pdf", seed.PDF, "application/pdf")}
        )
        assert response.status_code == 503
        assert "réessayez dans quelques minutes" in response.text
        assert 'value="Moreau"' in response.text


@pytest.mark.parametrize("url", ["http://127.0.0.1:3310", "tcp://127.0.0.1", "clamd"])
def test_a_bad_clamd_url_is_refused_at_start(tmp_path: Path, url: str) -> None:
    with pytest.raises(SettingsError, match="CLAMD_URL"):
        make_settings(tmp_path, CLAMD_URL=url)


def test_a_checker_killed_with_bytes_it_never_read_closes_quietly() -> None:
    # A CV cut at its deadline leaves part of it in the pipe's buffer: retiring
    # that checker must not raise (it was a 500 for the candidate).
    child = pdf_checkers._Child()
    assert child.process.stdin is not None
    child.process.kill()
    child.process.wait()
    child.process.stdin.write(b"%PDF-" + b"x" * 1000)
    child.close()
