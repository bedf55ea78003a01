"""Logging set-up, done once per process by the entry point.

structlog and the standard library (Faust, mode, aiokafka, ...) share one handler on stderr,
rendered by structlog: JSON lines off a terminal, readable colours on one. The same dictConfig is
handed to the Faust worker, which would otherwise install its own.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import structlog

_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]

#: Third-party loggers that are noise at INFO. kafka-python logs every refused connection of
#: its retry loop at ERROR; its failures reach freshet as exceptions, reported with context.
_QUIET = {"aiokafka": "WARNING", "httpx": "WARNING", "urllib3": "WARNING", "mode.timers": "WARNING",
          "sentence_transformers": "WARNING", "transformers": "WARNING", "kafka": "CRITICAL"}


def logging_config(level: str = "INFO", *, json: bool | None = None) -> dict[str, Any]:
    """The stdlib dictConfig that renders every record through structlog."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                               structlog.processors.format_exc_info, renderer],
                "foreign_pre_chain": _SHARED,
            }
        },
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "structlog",
                                 "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["default"]},
        "loggers": {name: {"level": lvl} for name, lvl in _QUIET.items()},
    }


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the standard library for this process."""
    logging.config.dictConfig(logging_config(level, json=json))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
