"""Every setting of the service, in one table: name, default, help.

The table feeds `widget-server --help`, the README (a test keeps them in step)
and `load_settings`, the only place that reads the environment.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from starlette.config import Config

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    cast: Callable[[str], Any] = str


def _bool(value: str) -> bool:
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _origins(value: str) -> tuple[str, ...]:
    return tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())


def _networks(value: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR networks, each checked."""
    networks = []
    for part in (p.strip() for p in value.split(",")):
        if part:
            try:
                networks.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {part!r}") from exc
    return tuple(networks)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ENVIRONMENT",
        "development",
        "`development` or `production`. Production refuses to start without `SECRET_KEY` and `PUBLIC_URL`.",
    ),
    Setting(
        "DATABASE_URL",
        "sqlite+aiosqlite:///var/widget.db",
        "SQLite file (default) or `postgresql+asyncpg://user:pass@host/db`.",
    ),
    Setting(
        "PUBLIC_URL",
        "http://localhost:8000",
        "Base URL the service is reached at; used in emails, the loader and form tokens.",
    ),
    Setting(
        "SECRET_KEY",
        "",
        "Signs form tokens. Unset in development: generated once and kept in `VAR_DIR/secret_key`.",
    ),
    Setting("HOST", "127.0.0.1", "Interface `serve` listens on."),
    Setting("PORT", "8000", "Port `serve` listens on.", int),
    Setting("VAR_DIR", "var", "Folder for the SQLite file, the generated secret key and the dev mailbox."),
    Setting(
        "SMTP_URL",
        "",
        "`smtp://host:25`, `smtp+starttls://user:pass@host:587` or `smtps://user:pass@host:465`. Unset: emails go to the dev mailbox at `/dev/mailbox`.",
    ),
    Setting("MAIL_FROM", "La bonne alternance <noreply@labonnealternance.example>", "`From` of every email."),
    Setting(
        "OPERATOR_NAME", "La bonne alternance (démo)", "Who runs the service, named in every email footer."
    ),
    Setting(
        "DEMO_DATA", "true", "Load the fictional demo directory into an empty database on `serve`.", _bool
    ),
    Setting("MAX_BODY_BYTES", "5242880", "Largest request body accepted (413 beyond).", int),
    Setting("MAX_CV_BYTES", "3145728", "Largest CV accepted (413 beyond).", int),
    Setting("OFFER_MAX_APPLICATIONS", "80", "An offer closes after this many applications.", int),
    Setting(
        "APPLICATIONS_PER_TARGET",
        "3",
        "Applications one candidate email may send to one offer or company.",
        int,
    ),
    Setting("APPLICATIONS_PER_DAY", "100", "Applications one candidate email may send per day.", int),
    Setting(
        "CALLER_APPLICATIONS_PER_COMPANY_PER_DAY",
        "20",
        "Applications one partner site may send to one company per day.",
        int,
    ),
    Setting(
        "RDV_INTERVAL_DAYS", "4", "Days before the same person may write again to the same formation.", int
    ),
    Setting("FORM_TOKEN_TTL_SECONDS", "7200", "How long a rendered form stays valid.", int),
    Setting("FORM_MIN_FILL_SECONDS", "3", "A form posted faster than this is treated as a bot.", int),
    Setting("RATE_LIMIT", "60/minute", "Requests per client IP on the API and the forms (429 beyond).", str),
    Setting(
        "API_KEY_RATE_LIMIT",
        "120/minute",
        "Requests per partner API key (counted per caller, besides the per-IP limit; 429 beyond).",
    ),
    Setting(
        "TRUSTED_PROXIES",
        "",
        "Reverse proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed, as comma-separated IPs or CIDR networks (e.g. `10.0.0.5,192.168.0.0/24`). Unset: none, the socket address is the client.",
        _networks,
    ),
    Setting(
        "REQUEST_HEADER_TIMEOUT_SECONDS",
        "10",
        "A client must send a request's line and headers within this time (408 and closed beyond).",
        float,
    ),
    Setting(
        "REQUEST_BODY_TIMEOUT_SECONDS",
        "60",
        "A client must send a whole request body within this time after its headers (408 beyond).",
        float,
    ),
    Setting(
        "RATE_LIMIT_STORAGE",
        "memory://",
        "`memory://` (one process) or `redis://host:6379` for several instances.",
    ),
    Setting(
        "FRAME_ANCESTORS",
        "*",
        "Origins allowed to frame the form pages, comma-separated; `*` for any site.",
        _origins,
    ),
    Setting(
        "EXAMPLE_HOST_PAGE_PORT",
        "8001",
        "Port `serve` also serves the example partner site (`examples/host-page/`) on, at http://127.0.0.1:PORT, another origin than the widget; `0` disables it.",
        int,
    ),
    Setting("OUTBOX_POLL_SECONDS", "1.0", "How often the email worker looks for due messages.", float),
    Setting(
        "OUTBOX_LEASE_SECONDS",
        "120",
        "A claimed message returns to the queue if its worker dies for this long.",
        int,
    ),
    Setting(
        "OUTBOX_MAX_ATTEMPTS",
        "8",
        "A message is given up after this many temporary SMTP refusals (an unreachable server does not count: messages wait for it).",
        int,
    ),
    Setting("OUTBOX_WORKER", "true", "Run the email worker inside `serve`.", _bool),
    Setting(
        "REMINDER_DAYS", "5", "Days without an answer before the one reminder to the recruiter or CFA.", int
    ),
    Setting("CV_RETENTION_DAYS", "30", "CV files are deleted this many days after delivery.", int),
    Setting(
        "PERSONAL_DATA_RETENTION_DAYS",
        "730",
        "Candidate data is anonymised this many days after the last activity.",
        int,
    ),
    Setting("LOG_LEVEL", "INFO", "Python logging level."),
)


@dataclass(frozen=True)
class Settings:
    environment: str
    database_url: str
    public_url: str
    secret_key: str
    host: str
    port: int
    var_dir: Path
    smtp_url: str
    mail_from: str
    operator_name: str
    demo_data: bool
    max_body_bytes: int
    max_cv_bytes: int
    offer_max_applications: int
    applications_per_target: int
    applications_per_day: int
    caller_applications_per_company_per_day: int
    rdv_interval_days: int
    form_token_ttl_seconds: int
    form_min_fill_seconds: int
    rate_limit: str
    api_key_rate_limit: str
    trusted_proxies: tuple[str, ...]
    request_header_timeout_seconds: float
    request_body_timeout_seconds: float
    rate_limit_storage: str
    frame_ancestors: tuple[str, ...]
    example_host_page_port: int
    outbox_poll_seconds: float
    outbox_lease_seconds: int
    outbox_max_attempts: int
    outbox_worker: bool
    reminder_days: int
    cv_retention_days: int
    personal_data_retention_days: int
    log_level: str

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)


class SettingsError(Exception):
    pass


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Read every setting from `environ` (default: the process environment), then `.env`."""
    env_path = env_file if env_file and Path(env_file).exists() else None
    config = Config(env_path) if environ is None else Config(env_path, environ=environ)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = config(setting.name, default=setting.default)
        try:
            values[setting.name.lower()] = setting.cast(raw)
        except ValueError as exc:
            raise SettingsError(f"{setting.name}: {exc}") from exc
    values["var_dir"] = Path(values["var_dir"])
    values["public_url"] = values["public_url"].rstrip("/")
    if values["environment"] not in {"development", "production"}:
        raise SettingsError("ENVIRONMENT must be 'development' or 'production'")
    if not values["secret_key"]:
        if values["environment"] == "production":
            raise SettingsError("SECRET_KEY is required in production")
        values["secret_key"] = _dev_secret(values["var_dir"])
    return Settings(**values)


def _dev_secret(var_dir: Path) -> str:
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key
