"""Structured JSON log lines, each carrying the request id of the request that wrote it.

A caller may add fields of its own with ``extra={"fields": {...}}`` (e.g. a failed sign-in's
``reason``); they never replace the standard ones."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from keyhall.context import request_id_var


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            # A line written after the request's context ended (the access line) names its request.
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({key: value for key, value in fields.items() if key not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """The server's logging: JSON lines on standard output, where a container runtime or a process
    supervisor collects them. (The other commands print their result on standard output and their
    errors on standard error, and do not call this.)"""
    # A line names none of the caller's file, line, thread or process, so the records need not
    # look them up (the logging HOWTO's "Optimization": some 5 us an access line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
