"""Log lines: readable text, or one JSON object per line (`LOG_FORMAT=json`)
for a log collector, carrying the id of the request being answered (the one
sent back in `X-Request-Id`), so every line of one request can be found."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from contextvars import ContextVar

from .settings import Settings

# Set by RequestIdMiddleware for the time of one request; the worker has none.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def formatter(settings: Settings) -> logging.Formatter:
    return JSONFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(settings: Settings) -> None:
    """One handler on the root logger, to stderr, in the chosen format; uvicorn's
    loggers propagate to it (`serve` gives uvicorn no logging config of its own).
    A process whose logging someone else set up already (pytest) is left as is."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for handler in list(root.handlers):
        if getattr(handler, "widget_server", False):
            root.removeHandler(handler)
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings))
    handler.widget_server = True  # type: ignore[attr-defined]
    root.addHandler(handler)
