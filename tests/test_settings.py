from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import PRODUCTION
from widget_server.cli import build_parser, main
from widget_server.settings import SETTINGS, Secret, Settings, SettingsError, load_settings, secret_weakness

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"| `{s.name}` |" not in readme]
    assert missing == []


def test_every_setting_is_in_the_command_help() -> None:
    help_text = build_parser().format_help()
    assert [s.name for s in SETTINGS if s.name not in help_text] == []


def test_settings_table_and_dataclass_agree() -> None:
    assert {s.name.lower() for s in SETTINGS} == set(Settings.__dataclass_fields__)


def test_dev_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    environ = {"VAR_DIR": str(tmp_path)}
    first = load_settings(environ, env_file=None).secret_key.reveal()
    second = load_settings(environ, env_file=None).secret_key.reveal()
    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({"ENVIRONMENT": "production", "VAR_DIR": str(tmp_path)}, env_file=None)


def test_bad_value_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PORT"):
        load_settings({"PORT": "eighty", "VAR_DIR": str(tmp_path)}, env_file=None)


BOUNDED = [setting for setting in SETTINGS if setting.bounds is not None]
# Every bounded setting at its widest, so each end can be tried alone.
ROOMY = {"MAX_BODY_BYTES": str(1024**3), "MAX_CV_BYTES": "1024"}


def _text(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


def test_every_numeric_setting_has_a_range() -> None:
    numeric = [s.name for s in SETTINGS if s.cast in (int, float)]
    assert numeric and [s.name for s in BOUNDED] == numeric
    for setting in BOUNDED:
        assert setting.check(setting.cast(setting.default)) is not None  # the default is in range


@pytest.mark.parametrize("setting", BOUNDED, ids=lambda s: s.name)
def test_a_numeric_setting_out_of_its_range_stops_the_start_naming_it(tmp_path: Path, setting: Any) -> None:
    low, high = setting.bounds
    below = low - (1 if setting.cast is int else low / 2 or 1)
    for value in (_text(below), _text(high * 2), "-1"):
        with pytest.raises(SettingsError, match=f"^{setting.name}: must be from {setting.range_text()}"):
            load_settings({"VAR_DIR": str(tmp_path), **ROOMY, setting.name: value}, env_file=None)
    for value in (low, high):
        loaded = load_settings({"VAR_DIR": str(tmp_path), **ROOMY, setting.name: _text(value)}, env_file=None)
        assert getattr(loaded, setting.name.lower()) == value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_TIMEOUT_SECONDS", "0"),
        ("WEBHOOK_TIMEOUT_SECONDS", "nan"),
        ("OUTBOX_POLL_SECONDS", "inf"),
        ("OUTBOX_MAX_ATTEMPTS", "0"),
        ("APPLICATIONS_PER_DAY", "-5"),
        ("MAX_CV_BYTES", "0"),
        ("FORM_TOKEN_TTL_SECONDS", "0"),
        ("RATE_LIMIT", "0/minute"),
        ("API_KEY_RATE_LIMIT", "lots"),
    ],
)
def test_zero_negative_or_not_a_number_stops_the_start(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}: "):
        load_settings({"VAR_DIR": str(tmp_path), name: value}, env_file=None)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAX_CV_BYTES": "6000000"}, "MAX_CV_BYTES must not exceed MAX_BODY_BYTES"),
        (
            {"FORM_MIN_FILL_SECONDS": "120", "FORM_TOKEN_TTL_SECONDS": "60"},
            "FORM_MIN_FILL_SECONDS must be less",
        ),
    ],
)
def test_settings_that_only_make_sense_together(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({"VAR_DIR": str(tmp_path), **environ}, env_file=None)


def test_the_readme_and_the_help_give_each_range() -> None:
    readme = (ROOT / "README.md").read_text()
    help_text = " ".join(build_parser().format_help().split())
    for setting in BOUNDED:
        [row] = [line for line in readme.splitlines() if line.startswith(f"| `{setting.name}` |")]
        assert f"Range: {setting.range_text()}." in row
        assert f"[{setting.range_text()}]" in help_text


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OFFER_MAX_APPLICATIONS=7\n")
    settings = load_settings({"VAR_DIR": str(tmp_path)}, env_file=env_file)
    assert settings.offer_max_applications == 7


# --- production mode (SPEC section 13) ------------------------------------------


def production_error(tmp_path: Path, **environ: str | None) -> str:
    """The lines production mode refuses to start with, given PRODUCTION changed by `environ`."""
    values = {**PRODUCTION, "VAR_DIR": str(tmp_path), **environ}
    with pytest.raises(SettingsError) as error:
        load_settings({k: v for k, v in values.items() if v is not None}, env_file=None)
    return str(error.value)


def test_production_starts_with_the_required_settings(tmp_path: Path) -> None:
    settings = load_settings({**PRODUCTION, "VAR_DIR": str(tmp_path)}, env_file=None)
    assert settings.production
    assert settings.demo_data is False  # the default `true` is ignored there
    assert not (tmp_path / "secret_key").exists()


def test_production_names_every_missing_setting_on_its_own_line(tmp_path: Path) -> None:
    message = production_error(tmp_path, PUBLIC_URL="", SECRET_KEY="", SMTP_URL="")
    lines = message.splitlines()
    assert lines[0] == "production mode refuses to start:"
    assert [line.split()[1] for line in lines[1:]] == ["PUBLIC_URL", "SECRET_KEY", "SMTP_URL"]
    assert "SECRET_KEY is missing" in message


@pytest.mark.parametrize(
    "public_url", ["http://widget.example", "widget.example", "https://", "ftp://widget.example"]
)
def test_production_public_url_must_be_https(tmp_path: Path, public_url: str) -> None:
    message = production_error(tmp_path, PUBLIC_URL=public_url)
    assert message.splitlines()[1:] == [
        "  - PUBLIC_URL must be the https:// address the service is reached at (emails link to it)"
    ]


@pytest.mark.parametrize(
    ("secret_key", "reason"),
    [
        ("x", "is too short (1 characters"),
        ("test-secret-key", "is too short"),
        (secrets.token_hex(15), "is too short"),
        ("changeme-changeme-changeme-changeme", "looks like a placeholder"),
        ("my-SECRET-key-for-the-widget-server-2026", "looks like a placeholder"),
        ("a" * 64, "is not random enough"),
        ("abcabcabcabcabcabcabcabcabcabcabcabc", "is not random enough"),
        ("0123456789abcdef0123456789abcdef", "is not random enough"),
        (secrets.token_hex(16), "is not random enough"),  # 16 bytes only, in 32 characters
        ("correct horse battery staple", "is too short"),
    ],
)
def test_production_refuses_a_weak_secret_key(tmp_path: Path, secret_key: str, reason: str) -> None:
    message = production_error(tmp_path, SECRET_KEY=secret_key)
    [line] = message.splitlines()[1:]
    assert line.startswith(f"  - SECRET_KEY {reason}")


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(32),
        lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    ],
)
def test_production_accepts_32_random_bytes_in_any_usual_writing(
    tmp_path: Path, make_key: Callable[[], str]
) -> None:
    for _ in range(50):
        assert secret_weakness(make_key()) is None


def test_production_refuses_the_demo_directory(tmp_path: Path) -> None:
    message = production_error(tmp_path, DEMO_DATA="true")
    assert message.splitlines()[1:] == [
        "  - DEMO_DATA=true is refused: the fictional demo directory is never loaded in production"
    ]
    settings = load_settings({**PRODUCTION, "VAR_DIR": str(tmp_path), "DEMO_DATA": "false"}, env_file=None)
    assert settings.demo_data is False


def test_production_refuses_a_weak_metrics_token(tmp_path: Path) -> None:
    message = production_error(tmp_path, METRICS_TOKEN="prometheus")
    assert message.splitlines()[1:] == [
        "  - METRICS_TOKEN is too short (10 characters; at least 32 random bytes are needed)"
    ]


# --- the operator's identity, for the privacy notice (RGPD article 13) ----------

OPERATOR_IDENTITY = ("OPERATOR_NAME", "OPERATOR_ADDRESS", "PRIVACY_CONTACT_EMAIL")


def test_production_refuses_to_start_without_the_operator_identity(tmp_path: Path) -> None:
    message = production_error(tmp_path, **{name: None for name in OPERATOR_IDENTITY})
    assert message.splitlines()[1:] == [
        "  - OPERATOR_NAME must name the operator: the privacy notice says who holds the data",
        "  - OPERATOR_ADDRESS must be the operator's postal address, for the privacy notice",
        "  - PRIVACY_CONTACT_EMAIL must be set: people write there to use their rights",
    ]


@pytest.mark.parametrize("name", OPERATOR_IDENTITY)
def test_production_names_each_missing_part_of_the_identity(tmp_path: Path, name: str) -> None:
    assert production_error(tmp_path, **{name: "  "}).splitlines()[1].split()[1] == name


def test_production_refuses_the_demo_operator_name(tmp_path: Path) -> None:
    message = production_error(tmp_path, OPERATOR_NAME="La bonne alternance (démo)")
    assert message.splitlines()[1:] == [
        "  - OPERATOR_NAME must name the operator: the privacy notice says who holds the data"
    ]


def test_development_runs_without_the_operator_identity(tmp_path: Path) -> None:
    settings = load_settings({"VAR_DIR": str(tmp_path)}, env_file=None)
    assert settings.operator_name == "La bonne alternance (démo)"
    assert (settings.operator_address, settings.privacy_contact_email, settings.dpo_contact) == ("", "", "")
    assert settings.legal_basis == "public_task"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRIVACY_CONTACT_EMAIL", "donnees"),
        ("PRIVACY_CONTACT_EMAIL", "donnees@operateur.example\nBcc: x@y.example"),
        ("PRIVACY_CONTACT_EMAIL", "a b@operateur.example"),
        ("OPERATOR_NAME", "Opérateur\nX-Injected: 1"),
        ("OPERATOR_ADDRESS", "1 rue\x00 du Port"),
        ("DPO_CONTACT", "http://dpo.operateur.example"),
        ("DPO_CONTACT", "javascript:alert(1)"),
        ("DPO_CONTACT", "https://"),
        ("LEGAL_BASIS", "consent"),
    ],
)
def test_identity_settings_refuse_bad_values(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"VAR_DIR": str(tmp_path), name: value}, env_file=None)


def test_identity_settings_accept_good_values(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "VAR_DIR": str(tmp_path),
            "PRIVACY_CONTACT_EMAIL": " Donnees@Operateur.example ",
            "DPO_CONTACT": "https://operateur.example/dpo",
            "OPERATOR_ADDRESS": "1 rue  du Port,   13002 Marseille",
            "LEGAL_BASIS": "legitimate_interest",
        },
        env_file=None,
    )
    assert settings.privacy_contact_email == "Donnees@operateur.example"
    assert settings.dpo_contact == "https://operateur.example/dpo"
    assert settings.operator_address == "1 rue du Port, 13002 Marseille"
    assert settings.legal_basis == "legitimate_interest"
    dpo = load_settings({"VAR_DIR": str(tmp_path), "DPO_CONTACT": "dpo@operateur.example"}, env_file=None)
    assert dpo.dpo_contact == "dpo@operateur.example"


def test_the_command_refuses_to_start_in_production_and_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("PUBLIC_URL", "SECRET_KEY", "SMTP_URL", "DATABASE_URL", "DEMO_DATA", *OPERATOR_IDENTITY):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", "changeme")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "configuration error: production mode refuses to start:"
    assert [line.split()[1] for line in err[1:]] == [
        "PUBLIC_URL",
        "SECRET_KEY",
        "SMTP_URL",
        *OPERATOR_IDENTITY,
    ]
    assert not (tmp_path / "var").exists()  # nothing was started or written


# --- development defaults ---------------------------------------------------------


def test_var_dir_moves_the_default_sqlite_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "state"))
    assert load_settings(env_file=None).database_url == f"sqlite+aiosqlite:///{tmp_path}/state/widget.db"
    assert main(["migrate"]) == 0
    assert (tmp_path / "state" / "widget.db").is_file()
    assert not (tmp_path / "var").exists()


def test_public_url_follows_port_unless_set(tmp_path: Path) -> None:
    assert load_settings({"VAR_DIR": str(tmp_path), "PORT": "8123"}, env_file=None).public_url == (
        "http://localhost:8123"
    )
    assert load_settings({"VAR_DIR": str(tmp_path)}, env_file=None).public_url == "http://localhost:8000"
    given = {"VAR_DIR": str(tmp_path), "PORT": "8123", "PUBLIC_URL": "http://widget.test/"}
    assert load_settings(given, env_file=None).public_url == "http://widget.test"


def test_log_format_is_text_or_json(tmp_path: Path) -> None:
    assert load_settings({"VAR_DIR": str(tmp_path), "LOG_FORMAT": "json"}, env_file=None).log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings({"VAR_DIR": str(tmp_path), "LOG_FORMAT": "xml"}, env_file=None)


# --- secrets never print (#14 item 10) --------------------------------------------


def test_secrets_never_print(tmp_path: Path) -> None:
    environ = {
        **PRODUCTION,
        "VAR_DIR": str(tmp_path),
        "SMTP_URL": "smtp+starttls://robot%40lba.example:Sm7pPa55w0rd@smtp.example:587",
        "DATABASE_URL": "postgresql+asyncpg://widget:Db9Pa55w0rd@db.example/widget",
        "METRICS_TOKEN": "Yk3-oTq8Zr0VbN5xWc1LmP7sHd4GfJ2eAu6iQy9Rt0E",
    }
    settings = load_settings(environ, env_file=None)
    shown = [repr(settings), str(settings), f"{settings}", repr(settings.secret_key), str(settings.smtp_url)]
    for text in shown:
        for value in (PRODUCTION["SECRET_KEY"], "Sm7pPa55w0rd", "Db9Pa55w0rd", environ["METRICS_TOKEN"]):
            assert value not in text
    # What is not secret still shows, so a printed configuration stays useful.
    assert "smtp+starttls://robot%40lba.example:**********@smtp.example:587" in repr(settings)
    assert "postgresql+asyncpg://widget:**********@db.example/widget" in repr(settings)
    assert "https://widget.example" in repr(settings)
    # The values themselves are one explicit call away.
    assert settings.secret_key.reveal() == PRODUCTION["SECRET_KEY"]
    assert settings.smtp_url.reveal() == environ["SMTP_URL"]
    assert settings.database_url == environ["DATABASE_URL"]


def test_replace_keeps_secrets_typed(settings: Settings) -> None:
    changed = settings.replace(smtp_url="smtp://u:hunter2hunter2@127.0.0.1:25")
    assert isinstance(changed.smtp_url, Secret)
    assert "hunter2" not in repr(changed)
