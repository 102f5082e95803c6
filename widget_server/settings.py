"""Every setting of the service, in one table: name, default, help.

The table feeds `widget-server --help`, the README (a test keeps them in step)
and `load_settings`, the only place that reads the environment.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from starlette.config import Config

ROOT = Path(__file__).resolve().parent.parent

# A key made of 32 random bytes, written in hex or base64, measures 180 bits or
# more by the estimate of `_estimated_bits`; a phrase or a repeated pattern does not.
MIN_SECRET_BITS = 160
MIN_SECRET_LENGTH = 32
PLACEHOLDERS = (
    "changeme",
    "change-me",
    "change_me",
    "secret",
    "password",
    "example",
    "placeholder",
    "insecure",
)


class Secret:
    """A setting that must never print: `repr` and `str` mask it (a URL keeps all
    but its password), so settings can be logged or shown in a traceback.
    `reveal()` is the one way to the value."""

    __slots__ = ("_shown", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._shown = _mask_url_password(value) if "://" in value else ("**********" if value else "")

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)

    def __str__(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"Secret({self._shown!r})"


def _mask_url_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:**********@{netloc}"))


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    cast: Callable[[str], Any] = str
    # A number's sensible range, both ends included (`load_settings` refuses any other).
    bounds: tuple[float, float] | None = None

    def check(self, value: Any) -> Any:
        """`value` (cast) when it lies within `bounds`; ValueError otherwise (NaN too)."""
        if self.bounds is not None:
            low, high = self.bounds
            if not low <= value <= high:
                raise ValueError(f"must be from {self.range_text()}, not {value!r}")
        return value

    def range_text(self) -> str:
        """`bounds` as people read them: "1 to 65535"."""
        return f"{_number(self.bounds[0])} to {_number(self.bounds[1])}" if self.bounds else ""


def _number(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


def _bool(value: str) -> bool:
    if value.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if value.strip().lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _clamd_url(value: str) -> str:
    from .clamd import check_url

    return check_url(value) if value else ""


def _email(value: str) -> str:
    """An email address (checked like a candidate's, without asking DNS), or empty."""
    from email_validator import EmailNotValidError, validate_email

    value = value.strip()
    if not value:
        return ""
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise ValueError(f"not an email address: {value!r} ({exc})") from None


def _one_line(value: str) -> str:
    """Text shown on pages and in emails: one line, no control character."""
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise ValueError(f"must be one line of text without control characters: {value!r}")
    return " ".join(value.split())


def _contact(value: str) -> str:
    """An email address or an https:// address, or empty."""
    value = value.strip()
    if value.startswith("https://"):
        if not urlsplit(value).hostname or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"not an https:// address: {value!r}")
        return value
    return _email(value)


def _legal_basis(value: str) -> str:
    if value not in LEGAL_BASES:
        raise ValueError(f"not one of {', '.join(LEGAL_BASES)}: {value!r}")
    return value


# The legal bases (RGPD article 6.1) a privacy notice can state, by setting value.
LEGAL_BASES = ("public_task", "legitimate_interest")


def _log_format(value: str) -> str:
    if value not in {"text", "json"}:
        raise ValueError(f"not 'text' or 'json': {value!r}")
    return value


def _rate(value: str) -> str:
    """A rate limit in the `limits` notation (`60/minute`), of at least one request."""
    from limits import parse

    if parse(value).amount < 1:
        raise ValueError(f"must allow at least one request: {value!r}")
    return value


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


DEMO_OPERATOR_NAME = "La bonne alternance (démo)"
_DAY = 86400
_GIB = 1024**3
_COUNT = 10**9

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "ENVIRONMENT",
        "development",
        "`development` or `production`. Production refuses to start, with one line per problem, unless `PUBLIC_URL` is https, `SECRET_KEY` holds at least 32 random bytes, `SMTP_URL` is set and the privacy notice can name the operator (`OPERATOR_NAME`, `OPERATOR_ADDRESS`, `PRIVACY_CONTACT_EMAIL`); it never loads the demo directory and has no dev mailbox.",
    ),
    Setting(
        "DATABASE_URL",
        "",
        "`postgresql+asyncpg://user:pass@host/db`, or a SQLite file. Unset: `sqlite+aiosqlite:///VAR_DIR/widget.db`.",
    ),
    Setting(
        "PUBLIC_URL",
        "",
        "Base URL the service is reached at; used in emails, the loader and form tokens. Unset (development only): `http://localhost:PORT`.",
    ),
    Setting(
        "SECRET_KEY",
        "",
        "Signs form tokens; at least 32 random bytes, e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`. Unset (development only): generated once and kept in `VAR_DIR/secret_key`.",
    ),
    Setting("HOST", "127.0.0.1", "Interface `serve` listens on."),
    Setting("PORT", "8000", "Port `serve` listens on.", int, bounds=(1, 65535)),
    Setting("VAR_DIR", "var", "Folder for the SQLite file, the generated secret key and the dev mailbox."),
    Setting(
        "SMTP_URL",
        "",
        "`smtp://host:25`, `smtp+starttls://user:pass@host:587` or `smtps://user:pass@host:465`. Unset: emails go to the dev mailbox at `/dev/mailbox`.",
    ),
    Setting("MAIL_FROM", "La bonne alternance <noreply@labonnealternance.example>", "`From` of every email."),
    Setting(
        "OPERATOR_NAME",
        DEMO_OPERATOR_NAME,
        "Who runs the service (the data controller): named in every page header, email footer and the privacy notice. Production requires it set.",
        _one_line,
    ),
    Setting(
        "OPERATOR_ADDRESS",
        "",
        "The operator's postal address, shown in the privacy notice (`/confidentialite`), on one line. Production requires it.",
        _one_line,
    ),
    Setting(
        "PRIVACY_CONTACT_EMAIL",
        "",
        "Where people write to use their rights (access, correction, erasure…), shown in the privacy notice. Production requires it.",
        _email,
    ),
    Setting(
        "DPO_CONTACT",
        "",
        "How to reach the operator's data protection officer (DPO): an email address or an `https://` address, shown in the privacy notice when set.",
        _contact,
    ),
    Setting(
        "LEGAL_BASIS",
        "public_task",
        "The legal basis the privacy notice states (RGPD article 6.1): `public_task` (e, a public service's mission) or `legitimate_interest` (f, a private operator putting people in touch).",
        _legal_basis,
    ),
    Setting(
        "DEMO_DATA", "true", "Load the fictional demo directory into an empty database on `serve`.", _bool
    ),
    Setting(
        "MAX_BODY_BYTES", "5242880", "Largest request body accepted (413 beyond).", int, bounds=(1024, _GIB)
    ),
    Setting("MAX_CV_BYTES", "3145728", "Largest CV accepted (413 beyond).", int, bounds=(1024, _GIB)),
    Setting(
        "CLAMD_URL",
        "",
        "ClamAV daemon scanning every CV (INSTREAM), `tcp://127.0.0.1:3310` or `unix:///run/clamav/clamd.ctl`. A virus is refused (415); while clamd cannot answer, CVs are refused with 503 and `Retry-After`, never forwarded unscanned. Unset: no scan.",
        _clamd_url,
    ),
    Setting(
        "OFFER_MAX_APPLICATIONS",
        "80",
        "An offer closes after this many applications.",
        int,
        bounds=(1, _COUNT),
    ),
    Setting(
        "APPLICATIONS_PER_TARGET",
        "3",
        "Applications one candidate email may send to one offer or company.",
        int,
        bounds=(1, _COUNT),
    ),
    Setting(
        "APPLICATIONS_PER_DAY",
        "100",
        "Applications one candidate email may send per day.",
        int,
        bounds=(1, _COUNT),
    ),
    Setting(
        "CALLER_APPLICATIONS_PER_COMPANY_PER_DAY",
        "20",
        "Applications one partner site may send to one company per day.",
        int,
        bounds=(1, _COUNT),
    ),
    Setting(
        "RDV_INTERVAL_DAYS",
        "4",
        "Days before the same person may write again to the same formation.",
        int,
        bounds=(1, 365),
    ),
    Setting(
        "FORM_TOKEN_TTL_SECONDS", "7200", "How long a rendered form stays valid.", int, bounds=(60, 7 * _DAY)
    ),
    Setting(
        "FORM_MIN_FILL_SECONDS",
        "3",
        "A form posted faster than this is treated as a bot (`0`: no such check).",
        int,
        bounds=(0, 600),
    ),
    Setting(
        "KEPT_CVS_MAX_BYTES",
        "268435456",
        "Room for the CVs kept on the server across form errors, all forms together (each for `FORM_TOKEN_TTL_SECONDS` at most). When full (or `0`), a candidate sent back by an error chooses the file again.",
        int,
        bounds=(0, 64 * _GIB),
    ),
    Setting(
        "RATE_LIMIT", "60/minute", "Requests per client IP on the API and the forms (429 beyond).", _rate
    ),
    Setting(
        "API_KEY_RATE_LIMIT",
        "120/minute",
        "Requests per partner API key (counted per caller, besides the per-IP limit; 429 beyond).",
        _rate,
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
        bounds=(1, 600),
    ),
    Setting(
        "REQUEST_BODY_TIMEOUT_SECONDS",
        "60",
        "A client must send a whole request body within this time after its headers (408 beyond).",
        float,
        bounds=(1, 3600),
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
        bounds=(0, 65535),
    ),
    Setting(
        "OUTBOX_POLL_SECONDS",
        "1.0",
        "How often the email worker looks for due messages.",
        float,
        bounds=(0.01, 3600),
    ),
    Setting(
        "OUTBOX_LEASE_SECONDS",
        "120",
        "A claimed message returns to the queue if its worker dies for this long.",
        int,
        bounds=(5, _DAY),
    ),
    Setting(
        "OUTBOX_MAX_ATTEMPTS",
        "8",
        "A message is given up after this many temporary SMTP refusals (an unreachable server does not count: messages wait for it).",
        int,
        bounds=(1, 100),
    ),
    Setting("OUTBOX_WORKER", "true", "Run the email worker inside `serve`.", _bool),
    Setting(
        "WEBHOOK_TIMEOUT_SECONDS",
        "10",
        "A partner's webhook endpoint must answer within this time (capped at a quarter of `OUTBOX_LEASE_SECONDS`); beyond, the attempt counts as failed and is retried.",
        float,
        bounds=(1, 300),
    ),
    Setting(
        "WEBHOOK_MAX_ATTEMPTS",
        "12",
        "A webhook is given up after this many failed attempts (timeouts, connection errors, 408, 429 and 5xx answers), retried with exponential backoff up to an hour apart.",
        int,
        bounds=(1, 100),
    ),
    Setting(
        "REMINDER_DAYS",
        "5",
        "Days without an answer before the one reminder to the recruiter or CFA.",
        int,
        bounds=(1, 90),
    ),
    Setting(
        "REMINDERS_EVERY_SECONDS",
        "300",
        "How often one of the email workers looks for reminders to send (whichever claims the job first).",
        int,
        bounds=(1, _DAY),
    ),
    Setting(
        "CV_RETENTION_DAYS",
        "30",
        "CV files are deleted this many days after delivery.",
        int,
        bounds=(1, 3650),
    ),
    Setting(
        "PERSONAL_DATA_RETENTION_DAYS",
        "730",
        "Candidate data is anonymised this many days after the last activity.",
        int,
        bounds=(1, 3650),
    ),
    Setting("LOG_LEVEL", "INFO", "Python logging level."),
    Setting(
        "LOG_FORMAT",
        "text",
        "`text` (one readable line) or `json` (one JSON object per line, with the request id).",
        _log_format,
    ),
    Setting(
        "METRICS_TOKEN",
        "",
        "Bearer token `GET /metrics` asks for (`Authorization: Bearer …`). Unset: `/metrics` is open in development and absent (404) in production.",
    ),
)

# Settings whose value must never be printed.
SECRETS = frozenset({"secret_key", "smtp_url", "metrics_token"})


@dataclass(frozen=True)
class Settings:
    environment: str
    database_url: str
    public_url: str
    secret_key: Secret
    host: str
    port: int
    var_dir: Path
    smtp_url: Secret
    mail_from: str
    operator_name: str
    operator_address: str
    privacy_contact_email: str
    dpo_contact: str
    legal_basis: str
    demo_data: bool
    max_body_bytes: int
    max_cv_bytes: int
    clamd_url: str
    offer_max_applications: int
    applications_per_target: int
    applications_per_day: int
    caller_applications_per_company_per_day: int
    rdv_interval_days: int
    form_token_ttl_seconds: int
    form_min_fill_seconds: int
    kept_cvs_max_bytes: int
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
    webhook_timeout_seconds: float
    webhook_max_attempts: int
    reminder_days: int
    reminders_every_seconds: int
    cv_retention_days: int
    personal_data_retention_days: int
    log_level: str
    log_format: str
    metrics_token: Secret

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(
            {
                name: Secret(value) if name in SECRETS and isinstance(value, str) else value
                for name, value in changes.items()
            }
        )
        return Settings(**values)

    def __repr__(self) -> str:
        # The database URL stays a plain string for the query layer; only its password is masked.
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["database_url"] = _mask_url_password(self.database_url)
        return "Settings(" + ", ".join(f"{name}={value!r}" for name, value in shown.items()) + ")"


class SettingsError(Exception):
    pass


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Read every setting from `environ` (default: the process environment), then `.env`.

    In production, every missing or weak setting is named, one per line, in
    the `SettingsError`: an operator fixes them all in one go.
    """
    env_path = env_file if env_file and Path(env_file).exists() else None
    config = Config(env_path) if environ is None else Config(env_path, environ=environ)
    values: dict[str, Any] = {}
    given: set[str] = set()
    for setting in SETTINGS:
        raw = config(setting.name, default=None)
        if raw is not None:
            given.add(setting.name)
        try:
            values[setting.name.lower()] = setting.check(
                setting.cast(setting.default if raw is None else raw)
            )
        except ValueError as exc:
            raise SettingsError(f"{setting.name}: {exc}") from exc
    _check_together(values)
    if values["environment"] not in {"development", "production"}:
        raise SettingsError("ENVIRONMENT must be 'development' or 'production'")
    var_dir = values["var_dir"] = Path(values["var_dir"])
    if not values["database_url"]:
        values["database_url"] = f"sqlite+aiosqlite:///{var_dir / 'widget.db'}"
    if values["environment"] == "production":
        problems = production_problems(values, given)
        if problems:
            raise SettingsError("\n".join(["production mode refuses to start:", *problems]))
        values["demo_data"] = False
    if not values["public_url"]:
        values["public_url"] = f"http://localhost:{values['port']}"
    values["public_url"] = values["public_url"].rstrip("/")
    if not values["secret_key"]:
        values["secret_key"] = _dev_secret(var_dir)
    for name in SECRETS:
        values[name] = Secret(values[name])
    return Settings(**values)


def _check_together(values: Mapping[str, Any]) -> None:
    """Settings that only make sense together."""
    if values["max_cv_bytes"] > values["max_body_bytes"]:
        raise SettingsError("MAX_CV_BYTES must not exceed MAX_BODY_BYTES: no request could carry such a CV")
    if values["form_min_fill_seconds"] >= values["form_token_ttl_seconds"]:
        raise SettingsError(
            "FORM_MIN_FILL_SECONDS must be less than FORM_TOKEN_TTL_SECONDS: no form could be sent in time"
        )


def production_problems(values: Mapping[str, Any], given: set[str]) -> list[str]:
    """One line per setting production cannot run with."""
    problems = []
    public_url = urlsplit(values["public_url"])
    if public_url.scheme != "https" or not public_url.hostname:
        problems.append(
            "PUBLIC_URL must be the https:// address the service is reached at (emails link to it)"
        )
    weakness = secret_weakness(values["secret_key"])
    if weakness:
        problems.append(f"SECRET_KEY {weakness}: form tokens signed with it could be forged")
    if not values["smtp_url"]:
        problems.append("SMTP_URL must be set: production never writes emails to the dev mailbox")
    # The privacy notice names who holds the data and where to write (RGPD article 13).
    if values["operator_name"].strip() in ("", DEMO_OPERATOR_NAME):
        problems.append("OPERATOR_NAME must name the operator: the privacy notice says who holds the data")
    if not values["operator_address"].strip():
        problems.append("OPERATOR_ADDRESS must be the operator's postal address, for the privacy notice")
    if not values["privacy_contact_email"]:
        problems.append("PRIVACY_CONTACT_EMAIL must be set: people write there to use their rights")
    if "DEMO_DATA" in given and values["demo_data"]:
        problems.append(
            "DEMO_DATA=true is refused: the fictional demo directory is never loaded in production"
        )
    if values["metrics_token"]:
        weakness = secret_weakness(values["metrics_token"])
        if weakness:
            problems.append(f"METRICS_TOKEN {weakness}")
    return [f"  - {problem}" for problem in problems]


def secret_weakness(value: str) -> str | None:
    """Why `value` cannot pass for 32 random bytes, or None."""
    if not value:
        return "is missing"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is too short ({len(value)} characters; at least 32 random bytes are needed)"
    lowered = value.lower()
    if any(word in lowered for word in PLACEHOLDERS):
        return "looks like a placeholder"
    if _estimated_bits(value) < MIN_SECRET_BITS:
        return "is not random enough (repeated or predictable characters)"
    return None


def _estimated_bits(value: str) -> float:
    """Shannon entropy of the characters, times the length: an upper bound of the
    randomness a string can hold, low for repetitions and small alphabets."""
    counts = Counter(value)
    return -sum(n * math.log2(n / len(value)) for n in counts.values())


def _dev_secret(var_dir: Path) -> str:
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    var_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key
