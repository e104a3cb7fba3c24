"""Structured logging for every Kybernetes process.

structlog renders readable key=value lines on a terminal and JSON lines
otherwise (files, pipes, systemd). Every logger is bound to a `component`
("apiserver", "scheduler", "kubelet", …); lines about one object add
`object="pods/default/web-1"` through `obj_ref()`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(*, level: str = "info", json: bool | None = None, stream: Any = None) -> None:
    """Set up structlog once per process; `json=None` picks JSON when the stream is not a terminal."""
    out = stream or sys.stderr
    if json is None:
        json = not (hasattr(out, "isatty") and out.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level.lower(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def get_logger(component: str, **bound: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger that names its component on every line."""
    # get_logger(**values) stays lazy, so module-level loggers pick up configure() called later in main().
    return structlog.get_logger(component=component, **bound)


def obj_ref(resource: str, name: str, namespace: str = "") -> str:
    """The `object` field of a log line: resource/namespace/name (or resource/name)."""
    return f"{resource}/{namespace}/{name}" if namespace else f"{resource}/{name}"
