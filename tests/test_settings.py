from __future__ import annotations

from pathlib import Path

import pytest

from widget_server.cli import build_parser
from widget_server.settings import ROOT, SETTINGS, Settings, SettingsError, load_settings


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
    first = load_settings(environ, env_file=None).secret_key
    second = load_settings(environ, env_file=None).secret_key
    assert len(first) >= 32
    assert first == second
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_production_requires_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings({"ENVIRONMENT": "production", "VAR_DIR": str(tmp_path)}, env_file=None)


def test_bad_value_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PORT"):
        load_settings({"PORT": "eighty", "VAR_DIR": str(tmp_path)}, env_file=None)


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OFFER_MAX_APPLICATIONS=7\n")
    settings = load_settings({"VAR_DIR": str(tmp_path)}, env_file=env_file)
    assert settings.offer_max_applications == 7
