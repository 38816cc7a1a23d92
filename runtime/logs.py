"""The log format every process shares: one JSON object per line, or text for people.

Each line carries the request id (API) or the analysis id (worker) of the work it is
about, taken from context variables the API's middleware and the worker's slots set.

    LOG_FORMAT=json|text   (default json; `make run` uses text)
    LOG_LEVEL=INFO
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the API request being served (set by the API's middleware)."""
analysis_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "analysis_id", default=None
)
"""The id of the analysis a worker slot works on."""


class LogSettings(BaseSettings):
    """How a process writes its log."""

    model_config = SettingsConfigDict(env_prefix="LOG_", extra="ignore")

    format: Literal["json", "text"] = "json"
    """`json`: one object per line for log collectors; `text`: for a terminal."""
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def add_ids_to_records() -> None:
    """Give every log record, from any logger, the current request and analysis ids."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_ids", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id.get()
        record.analysis_id = analysis_id.get()
        return record

    factory.adds_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "analysis_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A line for people: time, level, logger, [id], message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            str(value)
            for value in (getattr(record, "request_id", None), getattr(record, "analysis_id", None))
            if value
        ]
        record.ids = f" [{' '.join(ids)}]" if ids else ""
        return super().format(record)


def configure(settings: LogSettings) -> None:
    """Send every logger's records to stderr in the chosen format."""
    add_ids_to_records()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
