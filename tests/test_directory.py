from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from databases import Database
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import make_settings
from tests.support import on_database as run
from widget_server import directory, tables
from widget_server.cli import main
from widget_server.directory import ImportFileError, ImportReport, import_file
from widget_server.settings import Settings

SIRET_A = "73282932000074"
SIRET_B = "44306184100047"
OFFER_HEADER = (
    "offer_id,title,siret,company_name,address,postcode,city,status,posted_on,expires_on,contact_email"
)


def rows(settings: Settings, table: sa.Table) -> list[dict[str, Any]]:
    async def work(database: Database) -> list[dict[str, Any]]:
        records = await database.fetch_all(table.select())
        return [dict(r._mapping) for r in records]

    return list(run(settings, work))


def do_import(settings: Settings, kind: str, path: Path, **options: Any) -> ImportReport:
    report: ImportReport = run(settings, lambda db: import_file(db, kind, path, **options))
    return report


def write(path: Path, *lines: str, bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def offer_line(offer_id: str, **changes: str) -> str:
    values = {
        "offer_id": offer_id,
        "title": "Apprenti boulanger (H/F)",
        "siret": SIRET_A,
        "company_name": "Boulangerie Martin",
        "address": "3 rue du Four",
        "postcode": "69003",
        "city": "Lyon",
        "status": "active",
        "posted_on": "2026-10-01",
        "expires_on": "",
        "contact_email": "Recrutement@Boulangerie.EXAMPLE",
        **changes,
    }
    return ",".join(values[name] for name in OFFER_HEADER.split(","))


def test_csv_offers_are_imported_with_normalised_values(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "offers.csv",
        OFFER_HEADER,
        offer_line("OFF-1"),
        offer_line("OFF-2", expires_on="2027-01-31", status="Closed", contact_email=""),
    )
    report = do_import(settings, "offers", path)
    assert (report.total, report.inserted, report.updated, report.unchanged) == (2, 2, 0, 0)
    assert report.rejected == []
    stored = {r["offer_id"]: r for r in rows(settings, tables.offers)}
    assert stored["OFF-1"]["contact_email"] == "recrutement@boulangerie.example"
    assert stored["OFF-1"]["posted_on"] == dt.date(2026, 10, 1)
    assert stored["OFF-1"]["expires_on"] is None
    assert stored["OFF-1"]["updated_at"].tzinfo is not None
    assert stored["OFF-2"]["status"] == "closed"
    assert stored["OFF-2"]["expires_on"] == dt.date(2027, 1, 31)
    assert stored["OFF-2"]["contact_email"] is None


def test_semicolon_csv_with_bom_and_french_decimals(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "companies.csv",
        "siret;name;address;postcode;city;naf_code;hiring_score;contact_email",
        f"{SIRET_A};Garage Durand;12 avenue Jean-Jaurès;44000;Nantes;45.20a;0,75;rh@garage.example",
        bom=True,
    )
    report = do_import(settings, "companies", path)
    assert report.rejected == []
    [company] = rows(settings, tables.companies)
    assert company["siret"] == SIRET_A
    assert company["naf_code"] == "4520A"
    assert company["hiring_score"] == 0.75
    assert company["address"] == "12 avenue Jean-Jaurès"


def test_json_lines_formations_are_imported(settings: Settings, tmp_path: Path) -> None:
    record = {
        "cle_ministere_educatif": "088281P01313#L01",
        "title": "CAP Boulanger",
        "address": "18 rue Garibaldi",
        "postcode": "69003",
        "city": "Lyon",
        "cfa_siret": SIRET_B,
        "cfa_name": "CFA du Rhône",
        "cfa_address": "18 rue Garibaldi, 69003 Lyon",
        "cfa_phone": "04 65 71 12 34",
        "contact_email": "rdv@cfa.example",
        "contact_bounced": False,
    }
    path = tmp_path / "formations.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(record),
                "",
                json.dumps({**record, "cle_ministere_educatif": "CME-2", "contact_email": None, "extra": 1}),
                "{not json",
                json.dumps({**record, "cle_ministere_educatif": "CME-3", "cfa_phone": "08 99 12"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    report = do_import(settings, "formations", path)
    assert report.inserted == 2
    assert [line for line, _ in report.rejected] == [4, 5]
    assert "not valid JSON" in report.rejected[0][1]
    assert "cfa_phone" in report.rejected[1][1]
    assert report.ignored_columns == ["extra"]
    stored = {r["cle_ministere_educatif"]: r for r in rows(settings, tables.formations)}
    assert stored["088281P01313#L01"]["cfa_phone"] == "+33465711234"
    assert stored["CME-2"]["contact_email"] is None


def test_broken_rows_are_reported_by_line_and_the_rest_imported(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "offers.csv",
        OFFER_HEADER,  # line 1
        offer_line("OFF-1"),  # 2
        offer_line("OFF-2", siret="73282932000075"),  # 3: Luhn key
        offer_line("OFF-3", contact_email="recrutement@"),  # 4
        offer_line("OFF-4", posted_on="01/10/2026"),  # 5
        offer_line("OFF-5", status="open"),  # 6
        offer_line("OFF-1"),  # 7: duplicate
        offer_line("OFF-6") + ",surplus",  # 8
        offer_line("OFF-7", title='"Vendeur\nen boulangerie"'),  # 9-10: one record
        offer_line("OFF 8"),  # 11: bad id
        offer_line("OFF-9", title="", city=""),  # 12: two reasons
        offer_line("OFF-10"),  # 13
    )
    report = do_import(settings, "offers", path)
    reasons = dict(report.rejected)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 11, 12]
    assert "siret" in reasons[3] and "Luhn" in reasons[3]
    assert "contact_email" in reasons[4]
    assert "posted_on" in reasons[5] and "YYYY-MM-DD" in reasons[5]
    assert "status" in reasons[6]
    assert "line 2" in reasons[7]
    assert "12 values" in reasons[8]
    assert "offer_id" in reasons[11]
    assert "title: required" in reasons[12] and "city: required" in reasons[12]
    assert (report.total, report.inserted) == (11, 3)
    stored = {r["offer_id"]: r for r in rows(settings, tables.offers)}
    assert sorted(stored) == ["OFF-1", "OFF-10", "OFF-7"]
    assert stored["OFF-7"]["title"] == "Vendeur en boulangerie"
    summary = report.summary()
    assert "rejected: 8" in summary
    assert "line 3: siret" in summary


def test_reimport_changes_nothing_and_a_changed_row_counts_as_updated(
    settings: Settings, tmp_path: Path
) -> None:
    lines = [offer_line(f"OFF-{n}") for n in range(5)]
    path = write(tmp_path / "offers.csv", OFFER_HEADER, *lines)
    assert do_import(settings, "offers", path).inserted == 5
    before = {r["offer_id"]: r for r in rows(settings, tables.offers)}

    again = do_import(settings, "offers", path)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 5, [])
    assert {r["offer_id"]: r for r in rows(settings, tables.offers)} == before

    async def count_applications(database: Database) -> None:
        await database.execute(
            tables.offers.update().where(tables.offers.c.offer_id == "OFF-2").values(application_count=7)
        )

    run(settings, count_applications)
    lines[2] = offer_line("OFF-2", title="Apprentie boulangère (H/F)")
    changed = do_import(settings, "offers", write(tmp_path / "offers.csv", OFFER_HEADER, *lines))
    assert (changed.inserted, changed.updated, changed.unchanged) == (0, 1, 4)
    after = {r["offer_id"]: r for r in rows(settings, tables.offers)}
    assert after["OFF-2"]["title"] == "Apprentie boulangère (H/F)"
    assert after["OFF-2"]["application_count"] == 7  # the service's counter survives an import
    assert after["OFF-2"]["updated_at"] > before["OFF-2"]["updated_at"]
    assert after["OFF-3"]["updated_at"] == before["OFF-3"]["updated_at"]


def test_dry_run_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "companies.csv",
        "siret,name,address,postcode,city,naf_code,hiring_score,contact_email,contact_bounced",
        f"{SIRET_A},Garage Durand,1 rue A,44000,Nantes,4520A,0.8,rh@garage.example,true",
        f"{SIRET_B},Boulangerie,2 rue B,69003,Lyon,1071C,1.5,rh@boul.example,false",
    )
    report = do_import(settings, "companies", path, dry_run=True)
    assert (report.inserted, report.bounced, len(report.rejected)) == (1, 1, 1)
    assert "hiring_score" in report.rejected[0][1]
    assert "dry run" in report.summary()
    assert rows(settings, tables.companies) == []
    assert rows(settings, tables.contacts) == []


def test_flags_set_contact_state_and_never_clear_it(settings: Settings, tmp_path: Path) -> None:
    header = "siret,name,address,postcode,city,naf_code,hiring_score,contact_email,contact_opted_out"
    opted = write(
        tmp_path / "companies.csv",
        header,
        f"{SIRET_A},Garage Durand,1 rue A,44000,Nantes,4520A,0.8,RH@Garage.example,true",
        f"{SIRET_B},Boulangerie,2 rue B,69003,Lyon,1071C,0.5,rh@boul.example,false",
    )
    first = do_import(settings, "companies", opted)
    assert (first.opted_out, first.bounced) == (1, 0)
    [contact] = rows(settings, tables.contacts)
    assert contact["email"] == "rh@garage.example"
    assert contact["company_opt_out_at"] is not None
    assert contact["formation_opt_out_at"] is None

    cleared = write(
        tmp_path / "companies.csv",
        header,
        f"{SIRET_A},Garage Durand,1 rue A,44000,Nantes,4520A,0.8,rh@garage.example,false",
    )
    second = do_import(settings, "companies", cleared)
    assert (second.opted_out, second.unchanged) == (0, 1)
    assert rows(settings, tables.contacts) == [contact]


def test_formation_flags_mark_the_rdv_opt_out_and_the_bounce(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "formations.csv",
        "cle_ministere_educatif,title,address,postcode,city,cfa_siret,cfa_name,cfa_address,cfa_phone,"
        "contact_email,contact_opted_out,contact_bounced",
        f"CME-1,CAP Cuisine,1 rue A,34000,Montpellier,{SIRET_B},CFA,1 rue A,0465711234,cfa@cfa.example,true,",
        f"CME-2,BTS MCO,1 rue A,34000,Montpellier,{SIRET_B},CFA,1 rue A,0465711234,cfa@cfa.example,,true",
        f"CME-3,BTS NDRC,1 rue A,34000,Montpellier,{SIRET_B},CFA,1 rue A,0465711234,,,true",
    )
    report = do_import(settings, "formations", path)
    assert (report.opted_out, report.bounced, report.inserted) == (1, 1, 2)
    assert report.rejected[0][0] == 4 and "no contact_email" in report.rejected[0][1]
    [contact] = rows(settings, tables.contacts)
    assert contact["formation_opt_out_at"] is not None
    assert contact["company_opt_out_at"] is None
    assert contact["bounced_at"] is not None and contact["bounce_reason"]


def test_an_offer_row_cannot_opt_its_contact_out(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "offers.csv",
        OFFER_HEADER + ",contact_opted_out",
        offer_line("OFF-1") + ",true",
        offer_line("OFF-2") + ",false",
    )
    report = do_import(settings, "offers", path)
    assert report.inserted == 1
    assert report.rejected[0][0] == 2 and "offers have no opt-out" in report.rejected[0][1]
    assert rows(settings, tables.contacts) == []


def test_missing_header_column_is_a_file_error_and_writes_nothing(settings: Settings, tmp_path: Path) -> None:
    path = write(
        tmp_path / "offers.csv",
        OFFER_HEADER.replace(",siret", ""),
        offer_line("OFF-1").replace(f",{SIRET_A}", ""),
    )
    with pytest.raises(ImportFileError, match=r"missing required column.*siret"):
        do_import(settings, "offers", path)
    assert rows(settings, tables.offers) == []


def test_unusable_files_are_file_errors(settings: Settings, tmp_path: Path) -> None:
    latin1 = tmp_path / "offers.csv"
    latin1.write_bytes((OFFER_HEADER + "\n" + offer_line("OFF-1", city="Orléans")).encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"not UTF-8 text \(line 2\)"):
        do_import(settings, "offers", latin1)
    with pytest.raises(ImportFileError, match=r"unknown format \.xlsx"):
        do_import(settings, "offers", write(tmp_path / "offers.xlsx", OFFER_HEADER))
    with pytest.raises(ImportFileError, match="cannot read"):
        do_import(settings, "offers", tmp_path / "missing.csv")
    with pytest.raises(ImportFileError, match="empty"):
        do_import(settings, "offers", write(tmp_path / "empty.csv", ""))


def test_progress_is_reported_after_every_batch(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory, "BATCH_SIZE", 2)
    path = write(tmp_path / "offers.csv", OFFER_HEADER, *(offer_line(f"OFF-{n}") for n in range(5)))
    calls: list[tuple[int, int | None]] = []
    report = do_import(settings, "offers", path, progress=lambda done, total: calls.append((done, total)))
    assert report.inserted == 5
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_terminal_progress_draws_one_line_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe, terminal = io.StringIO(), Terminal()
    monkeypatch.setattr("sys.stderr", pipe)
    directory.terminal_progress(500, 1000)
    monkeypatch.setattr("sys.stderr", terminal)
    directory.terminal_progress(500, 1000)
    directory.terminal_progress(1000, 1000)
    assert pipe.getvalue() == ""
    assert terminal.getvalue().startswith("\r500 / 1,000 rows (50%)")
    assert terminal.getvalue().endswith("(100%)\x1b[K\n")


def test_summary_lists_at_most_fifty_rejected_rows() -> None:
    report = ImportReport("offers", total=60, rejected=[(n, "bad") for n in range(2, 62)])
    lines = report.summary().splitlines()
    assert "  line 51: bad" in lines
    assert "  line 52: bad" not in lines
    assert lines[-1] == "  … and 10 more"


def test_demo_directory_is_valid_and_loaded_only_into_an_empty_directory(settings: Settings) -> None:
    for kind in ("formations", "offers", "companies"):
        report = do_import(settings, kind, directory.DEMO_DIR / f"{kind}.csv", dry_run=True)
        assert report.rejected == [], report.summary()
        assert report.total >= 20
    assert run(settings, directory.load_demo) is True
    assert run(settings, directory.load_demo) is False
    assert len(rows(settings, tables.companies)) == 20


def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # resets PostgreSQL when the tests run on it
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key")


def test_cli_import_reports_and_exits_by_outcome(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_env(monkeypatch, tmp_path)
    path = write(tmp_path / "offers.csv", OFFER_HEADER, offer_line("OFF-1"), offer_line("OFF-2", siret="123"))
    assert main(["import", "offers", str(path), "--dry-run", "--quiet"]) == 1
    assert "would be inserted: 1" in capsys.readouterr().out
    assert main(["import", "offers", str(path)]) == 1
    out = capsys.readouterr().out
    assert "inserted: 1" in out and "line 3: siret" in out
    good = write(tmp_path / "good.csv", OFFER_HEADER, offer_line("OFF-1"))
    assert main(["import", "offers", str(good), "--quiet"]) == 0
    assert "unchanged: 1" in capsys.readouterr().out
    assert main(["import", "companies", str(good)]) == 2
    assert "missing required column" in capsys.readouterr().err


def test_what_the_service_closed_stays_closed_through_imports(settings: Settings, tmp_path: Path) -> None:
    """An offer its recruiter closed or that reached the applications cap, and a
    company whose contact opted out, stay closed whatever a later file says; the
    summary says how many and why."""
    from widget_server import eligibility
    from widget_server.targets import Target

    offers = write(tmp_path / "offers.csv", OFFER_HEADER, *(offer_line(f"OFF-{i}") for i in (1, 2, 3)))
    company_header = "siret,name,address,postcode,city,naf_code,hiring_score,contact_email"
    companies = write(
        tmp_path / "companies.csv",
        company_header,
        f"{SIRET_A},Garage Durand,1 rue A,44000,Nantes,4520A,0.8,rh@g.example",
    )
    do_import(settings, "offers", offers)
    do_import(settings, "companies", companies)

    async def the_service_decides(database: Database) -> None:
        now = dt.datetime.now(dt.UTC)
        o = tables.offers
        await database.execute(
            o.update().where(o.c.offer_id == "OFF-1").values(closed_reason="opted_out", closed_at=now)
        )
        await database.execute(o.update().where(o.c.offer_id == "OFF-2").values(application_count=80))
        await database.execute(tables.contacts.insert().values(email="rh@g.example", company_opt_out_at=now))

    run(settings, the_service_decides)
    # The partner's next export: every offer active, titles changed (so every row is rewritten).
    write(
        tmp_path / "offers.csv",
        OFFER_HEADER,
        *(offer_line(f"OFF-{i}", title="Boulanger·e") for i in (1, 2, 3)),
    )
    report = do_import(settings, "offers", offers, max_offer_applications=80)
    assert report.updated == 3
    assert report.kept_closed == {"opted_out": 1, "applications_cap": 1}
    assert (
        "left closed by the service: 2 (applications cap reached: 1, opted out by their contact: 1)"
        in report.summary()
    )
    again = do_import(settings, "companies", companies)
    assert again.kept_closed == {"opted_out": 1}
    assert "left closed by the service: 1 (opted out by their contact: 1)" in again.summary()

    async def verdicts(database: Database) -> dict[str, str | None]:
        targets = [Target("offer", f"OFF-{i}") for i in (1, 2, 3)] + [Target("company", SIRET_A)]
        found = await eligibility.check_many(database, targets, max_offer_applications=80)
        return {str(v.target): v.reason for v in found}

    assert run(settings, verdicts) == {
        "offer:OFF-1": "closed",
        "offer:OFF-2": "closed",
        "offer:OFF-3": None,
        f"company:{SIRET_A}": "opted_out",
    }
    [closed] = [r for r in rows(settings, tables.offers) if r["offer_id"] == "OFF-1"]
    assert (closed["status"], closed["closed_reason"], closed["title"]) == (
        "active",
        "opted_out",
        "Boulanger·e",
    )


def test_a_dry_run_counts_what_stays_closed_too(settings: Settings, tmp_path: Path) -> None:
    offers = write(tmp_path / "offers.csv", OFFER_HEADER, offer_line("OFF-1"))
    do_import(settings, "offers", offers)

    async def close(database: Database) -> None:
        await database.execute(tables.offers.update().values(closed_reason="opted_out"))

    run(settings, close)
    report = do_import(settings, "offers", offers, dry_run=True)
    assert report.kept_closed == {"opted_out": 1}


# Values a directory file may hold, good and bad, several rows sharing them.
_CELLS = {
    "offer_id": st.sampled_from(["O-1", "O-2", "", " O-3 ", "bad id!", "O-" + "9" * 120]),
    "title": st.sampled_from(["Apprenti boulanger", "", "  a\n b ", "x\x07", "é" * 301, "e\u0301"]),
    "siret": st.sampled_from(
        ["73282932000074", "732 829 320 00074", "73282932000075", "", "abc", "7328293200007²"]
    ),
    "company_name": st.text(max_size=8),
    "address": st.sampled_from(["1 rue de la Paix", "", "\t"]),
    "postcode": st.sampled_from(["69003", "6900", "", "69 003"]),
    "city": st.sampled_from(["Lyon", ""]),
    "status": st.sampled_from(["active", "Closed", "open", ""]),
    "posted_on": st.sampled_from(["2026-01-31", "2026-02-30", "31/01/2026", ""]),
    "expires_on": st.sampled_from(["2027-06-30", "", "soon"]),
    "contact_email": st.sampled_from(
        ["rh@exemple.fr", "RH@Exemple.FR", "", "pas une adresse", "x@mailinator.com", "é@exemple.fr"]
    ),
    "contact_opted_out": st.sampled_from(["", "oui", "maybe"]),
    "contact_bounced": st.sampled_from(["", "true", "no"]),
}


@settings(deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional=_CELLS), max_size=12))
def test_memoised_row_checks_answer_as_the_rule(records: list[dict[str, str]]) -> None:
    # The import keeps each column's answers for the texts it has seen: every row
    # gets the answer the rule gives that row on its own, refusals included.
    for kind in directory.SPECS:
        spec = directory.SPECS[kind]
        parse = directory._Parser(spec)
        for record in records:
            assert parse(record) == directory._parse_row(spec, record)


def _rule_row_by_row(spec: directory.Spec, rows: list[dict[str, str]]) -> tuple[list[Any], list[Any]]:
    """What the import answered a row at a time: the row rule, then the duplicate check."""
    accepted: list[Any] = []
    refused: list[Any] = []
    seen: dict[str, int] = {}
    for line, record in enumerate(rows, start=2):
        row = directory._parse_row(spec, record)
        if isinstance(row, directory._Row):
            key = row.values[spec.key]
            if key in seen:
                row = f"{spec.key} {directory._show(key)} is already on line {seen[key]}"
            else:
                seen[key] = line
        if isinstance(row, str):
            refused.append((line, row))
        else:
            accepted.append(
                (line, {**row.values, "contact_opted_out": row.opted_out, "contact_bounced": row.bounced})
            )
    return accepted, refused


@settings(deadline=None)
@given(
    st.lists(st.fixed_dictionaries({}, optional=_CELLS), max_size=12),
    st.integers(min_value=1, max_value=5),
    st.sampled_from([1, 3, 100_000]),
    st.randoms(use_true_random=False),
)
def test_rows_checked_by_column_answer_as_the_rule_row_by_row(
    records: list[dict[str, str]], size: int, memory: int, random: Any
) -> None:
    # The import checks a batch column by column, each column's answers kept
    # (forgotten past `memory` texts), and refuses a key already accepted: every
    # row gets what the rule and the duplicate check give it a row at a time,
    # whatever the batch size and the order of the file's columns.
    from unittest import mock

    for spec in directory.SPECS.values():
        header = [c.name for c in spec.columns] + ["unknown"]
        random.shuffle(header)
        rows = [{name: record.get(name, "") for name in header} for record in records]
        accepted, refused = [], []
        with mock.patch.object(directory, "_MEMO_MAX", memory):
            check = directory._BatchParser(spec, header)
            for start in range(0, len(rows), size):
                part = rows[start : start + size]
                batch, refusals = check(
                    list(range(start + 2, start + 2 + len(part))), [list(row.values()) for row in part]
                )
                names = list(batch.columns)
                values = zip(*batch.columns.values(), strict=True) if len(batch) else []
                accepted += [
                    (line, dict(zip(names, row, strict=True)))
                    for line, row in zip(batch.lines, values, strict=True)
                ]
                refused += refusals
                for *_, kept in check.columns:  # a column's memory stays bounded
                    if kept is not None:
                        assert len(kept[0]) <= max(memory, size) and kept[1] <= kept[0].keys()
        assert (accepted, refused) == _rule_row_by_row(spec, rows)


@pytest.mark.parametrize("size", [1, 1000])
def test_blank_rows_are_skipped_and_lines_still_counted(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(directory, "BATCH_SIZE", size)
    path = write(
        tmp_path / "offers.csv",
        OFFER_HEADER,  # line 1
        offer_line("OFF-1"),  # 2
        "",  # 3: an empty line
        ",,,,,,,,,,",  # 4: a spreadsheet's empty row
        " , ,\t",  # 5: only blanks, and too short
        offer_line("OFF-2", title='"Vendeur\nen boulangerie"'),  # 6-7
        offer_line("OFF-3", postcode="6900"),  # 8
        " ",  # 9
        offer_line("OFF-4"),  # 10
    )
    report = do_import(settings, "offers", path)
    assert report.total == 4
    assert report.inserted == 3
    assert [(line, reason.split(":")[0]) for line, reason in report.rejected] == [(8, "postcode")]


@pytest.mark.parametrize("size", [1, 2, 3, 1000])
def test_rows_are_judged_the_same_whatever_the_batch_size(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(directory, "BATCH_SIZE", size)
    path = write(
        tmp_path / "offers.csv",
        OFFER_HEADER,  # line 1
        offer_line("OFF-1"),  # 2
        offer_line("OFF-2", siret="73282932000075"),  # 3
        offer_line("OFF-1"),  # 4: duplicate of line 2
        offer_line("OFF-3", title='"Vendeur\nen boulangerie"'),  # 5-6
        offer_line("OFF-2"),  # 7: line 3 was refused, so not a duplicate
        offer_line("OFF-3") + ",surplus",  # 8
        offer_line("OFF-3"),  # 9: duplicate of line 5
        offer_line("OFF-4"),  # 10
    )
    report = do_import(settings, "offers", path)
    assert [(line, reason[:8]) for line, reason in report.rejected] == [
        (3, "siret: '"),
        (4, "offer_id"),
        (8, "12 value"),
        (9, "offer_id"),
    ]
    assert "'OFF-1' is already on line 2" in report.rejected[1][1]
    assert "'OFF-3' is already on line 5" in report.rejected[3][1]
    assert (report.total, report.inserted) == (8, 4)
    assert sorted(r["offer_id"] for r in rows(settings, tables.offers)) == [
        "OFF-1",
        "OFF-2",
        "OFF-3",
        "OFF-4",
    ]


def test_a_record_csv_cannot_read_stops_the_import_at_its_line(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory, "BATCH_SIZE", 2)
    path = write(
        tmp_path / "offers.csv",
        OFFER_HEADER,  # line 1
        offer_line("OFF-1"),  # 2
        offer_line("OFF-2", title='"Vendeur\nen boulangerie"'),  # 3-4
        offer_line("OFF-3"),  # 5
        offer_line("OFF-4", title="x" * 200_000),  # 6: past the csv module's field limit
    )
    with pytest.raises(ImportFileError, match=r"offers\.csv, line 6: not readable as CSV"):
        do_import(settings, "offers", path)
    # The batches before the one it is in were written.
    assert sorted(r["offer_id"] for r in rows(settings, tables.offers)) == ["OFF-1", "OFF-2"]


def test_sqlite_statements_stay_within_the_parameter_limit(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite, rows are written by the hundred in one statement: never more
    # parameters than the library allows (here as if it allowed 25: two rows).
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's statements")
    import aiosqlite

    sizes: list[int] = []
    execute = aiosqlite.Connection.execute_fetchall

    async def spy(self: Any, sql: str, parameters: Any = None) -> Any:
        sizes.append(len(parameters or ()))
        return await execute(self, sql, parameters)

    monkeypatch.setattr(aiosqlite.Connection, "execute_fetchall", spy)
    monkeypatch.setattr(directory, "_sqlite_variables", lambda: 25)
    path = write(tmp_path / "offers.csv", OFFER_HEADER, *(offer_line(f"OFF-{n}") for n in range(5)))
    assert do_import(settings, "offers", path).inserted == 5
    assert sizes == [24, 24, 12]
    assert sorted(r["offer_id"] for r in rows(settings, tables.offers)) == [f"OFF-{n}" for n in range(5)]
    assert do_import(settings, "offers", path).unchanged == 5
