"""Running Keyhall's HTTP server (``keyhall serve``): the address checks before it starts, the
public URL it announces, and the uvicorn set-up for one process or several workers.

- :func:`public_url_for`: without ``KEYHALL_PUBLIC_URL``, the public URL follows the address the
  server listens on (``http://127.0.0.1:8001`` for ``--port 8001``; a wildcard host is announced as
  ``127.0.0.1``), so ``make run PORT=8001`` needs nothing else.
- :func:`address_problem`: a one-line message when the port cannot be listened on (in use,
  privileged, no such address), said before any work is done, instead of the server's traceback
  or log line.

``keyhall.cli`` imports this module only when it serves, so ``keyhall --help`` stays fast.
"""

from __future__ import annotations

import errno
import ipaddress
import multiprocessing
import os
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

from keyhall.api.observability import metrics_of, start_metrics_server
from keyhall.app import create_app
from keyhall.jobs import CertificateWatcher, DomainChecker, LogoutNotifier, Purger, WebhookDeliverer
from keyhall.logs import configure_logging
from keyhall.runtime import Runtime
from keyhall.settings import Settings, load_settings
from keyhall.storage.database import Database

# uvloop (the event loop) and httptools (the HTTP/1.1 parser) are dependencies: both cut the
# server's CPU per request well below asyncio's loop and h11. uvloop has no Windows build.
_LOOP = "asyncio" if sys.platform == "win32" else "uvloop"
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - recognised, not bound, here


def server_options() -> dict[str, Any]:
    # Uvicorn's own proxy-header handling (on by default, trusting 127.0.0.1 or FORWARDED_ALLOW_IPS)
    # would rewrite the client address from X-Forwarded-For before Keyhall sees it: off, so that
    # KEYHALL_TRUSTED_PROXIES alone decides whose header is believed (keyhall.security.forwarded).
    return {"log_config": None, "access_log": False, "proxy_headers": False, "loop": _LOOP, "http": "httptools"}


def public_url_for(settings: Settings, host: str, port: int) -> str:
    """``KEYHALL_PUBLIC_URL`` when set, else ``http://`` + the listening host and port."""
    if "public_url" in settings.model_fields_set:
        return settings.public_url
    shown = "127.0.0.1" if host in _WILDCARDS else host
    try:
        if ipaddress.ip_address(shown).version == 6:
            shown = f"[{shown}]"
    except ValueError:
        pass  # a host name
    return f"http://{shown}:{port}"


def address_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (one line, saying what to do), or None when it can.

    A test bind with ``SO_REUSEADDR``, as the server binds, so a port left in TIME_WAIT by a
    previous run counts as free."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}; give another --host"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (another Keyhall?): pick another with "
                        f"--port N (make run PORT=N)")
            if exc.errno == errno.EACCES:
                return f"port {port} needs privileges to listen on: pick one above 1023 with --port N (make run PORT=N)"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def migrate_apart(database: Database) -> None:
    """Bring the schema to the newest revision, when it is not, in a short-lived child process (a
    fork of this one): the server then keeps none of Alembic and the migration scripts (some 10 MB)
    for the rest of its life, as a server started on an up-to-date database does. Where processes
    cannot fork, the migration runs here. A failed migration stops the start-up."""
    if database.at_schema_head():
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        database.migrate()
        return
    database.engine.dispose()  # no pooled connection may be shared with the child
    child = multiprocessing.get_context("fork").Process(target=_migrate, args=(database,), name="keyhall-migrate")
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"error: the database migration failed (exit code {child.exitcode}); its error is above")


def _migrate(database: Database) -> None:
    database.engine.dispose(close=False)  # the parent's connections, if any, stay the parent's
    database.migrate()


def worker_app() -> FastAPI:
    """The app of one ``keyhall serve --workers N`` worker process (a uvicorn factory): the parent
    has migrated the database and runs the background jobs, so a worker only serves."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, Runtime.build(settings))


def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    """Migrate the database, start the background jobs, then serve until stopped."""
    runtime = Runtime.build(settings)  # also creates the key file, if any, before workers start
    migrate_apart(runtime.database)  # once, here, before any worker starts
    if settings.dev:
        print(f"Development mode: open {settings.public_url}/_dev/app to watch a sign-in", flush=True)
    jobs = [DomainChecker(runtime, interval=settings.domain_check_interval_seconds),
            Purger(runtime, interval=settings.purge_interval_seconds),
            WebhookDeliverer(runtime, interval=settings.webhook_poll_interval_seconds),
            LogoutNotifier(runtime, interval=settings.backchannel_logout_interval_seconds),
            CertificateWatcher(runtime, interval=settings.metadata_refresh_seconds)]
    if workers > 1:
        # The workers are new processes (uvicorn spawns them) that read their settings from the
        # environment; the background jobs run once, in this supervising process.
        os.environ["KEYHALL_PUBLIC_URL"] = settings.public_url
        for job in jobs:
            job.start()
        try:
            uvicorn.run("keyhall.serving:worker_app", factory=True, workers=workers, host=host, port=port,
                        **server_options())
        finally:
            for job in jobs:
                job.stop()
        return
    app = create_app(settings, runtime)
    for job in jobs:
        job.attach(app)
    if settings.metrics_port:
        start_metrics_server(metrics_of(app), settings.metrics_port, settings.metrics_host)
    uvicorn.run(app, host=host, port=port, **server_options())
