"""Keep tokens out of every log line.

The page no longer puts its token in a URL, but an old client (or a hand-made link) may still
send `?token=…`, and uvicorn's access log writes request paths verbatim. These filters replace
the value of any `token` query parameter, and anything after `Bearer `, with `[redacted]`.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
_TOKEN_PARAM = re.compile(r"((?:^|[?&;\s])(?:access_)?token=)[^&#\s\"']*", re.IGNORECASE)
_BEARER = re.compile(r"(bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact(text: str) -> str:
    return _BEARER.sub(rf"\1{REDACTED}", _TOKEN_PARAM.sub(rf"\1{REDACTED}", text))


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # uvicorn's access formatter unpacks the arguments (client, method, path, version,
            # status): redact each text one and keep the tuple's shape.
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
            return True
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "masklog")


def install() -> None:
    """Add the filter to the loggers that may see a request path or a header (once)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
