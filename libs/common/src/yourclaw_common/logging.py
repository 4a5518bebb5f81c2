"""JSON logs with a correlation id carried in a context variable.

Usage: ``log = get_logger(__name__)`` then ``log.info("billing.inbox.duplicate",
event_id=...)``. Every line carries the service name and the correlation id of
the message or request being handled.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "StructLogger",
    "bind_correlation_id",
    "configure_logging",
    "correlation_id",
    "get_correlation_id",
    "get_logger",
]

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

# A field whose name has one of these words never shows its value in a log line
# (a safety net: code should not pass secrets to a logger in the first place).
_SECRET_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "authorization", "signature", "apikey"}
)
_SAFE_SUFFIXES = ("_id", "_count", "_last4", "_at")
_service_name = "yourclaw"


def get_correlation_id() -> str | None:
    """The correlation id of the work in progress, if any."""
    return correlation_id.get()


@contextmanager
def bind_correlation_id(value: str | None) -> Iterator[None]:
    """Set the correlation id for the duration of a block."""
    token = correlation_id.set(value)
    try:
        yield
    finally:
        correlation_id.reset(token)


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    if lowered.endswith(_SAFE_SUFFIXES):
        return False
    words = lowered.replace("-", "_").split("_")
    return (
        lowered in ("key", "api_key")
        or lowered.endswith("api_key")
        or any(w in _SECRET_WORDS for w in words)
    )


def _redact(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: "[redacted]" if _is_secret(name) else value
        for name, value in fields.items()
    }


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "service": _service_name,
            "logger": record.name,
            "event": record.getMessage(),
        }
        cid = correlation_id.get()
        if cid:
            line["correlation_id"] = cid
        fields = getattr(record, "fields", None)
        if fields:
            line.update(_redact(fields))
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc"] = "".join(traceback.format_exception(*record.exc_info))[-4000:]
        return orjson.dumps(line, default=str).decode()


class FieldsFormatter(logging.Formatter):
    """A line for people (a test's captured log): `base`'s line, then the
    event's fields as `name=value`, secrets redacted as in the JSON lines."""

    def __init__(self, base: logging.Formatter | None = None):
        super().__init__()
        self._base = base or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        line = self._base.format(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return line
        shown = " ".join(f"{k}={v!r}" for k, v in _redact(fields).items())
        return f"{line} {shown}"


class StructLogger:
    """A logger that takes a dotted event name and keyword fields."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger):
        self._logger = logger

    def _log(
        self, level: int, event: str, exc_info: bool, fields: dict[str, Any]
    ) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(
                level, event, exc_info=exc_info, extra={"fields": fields}, stacklevel=3
            )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)


def get_logger(name: str) -> StructLogger:
    """A structured logger named after its module."""
    return StructLogger(logging.getLogger(name))


def configure_logging(service_name: str, level: str = "INFO") -> None:
    """Send JSON lines to stderr for the whole process."""
    global _service_name
    _service_name = service_name
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Their per-request lines would duplicate ours and can carry URLs with secrets.
    for noisy in ("httpx", "httpcore", "uvicorn.access", "nats"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
