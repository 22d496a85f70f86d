"""The ``keyhall`` command line (also ``python -m keyhall``)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click
from fastapi import FastAPI

from keyhall.core import org_service
from keyhall.core.access import SYSTEM
from keyhall.core.connection_service import Context
from keyhall.core.vocabulary import Role
from keyhall.errors import KeyhallError
from keyhall.runtime import Runtime, utcnow
from keyhall.security.secrets import (
    SecretBox,
    load_or_create_key_file,
    new_key,
    parse_key_list,
    write_key_file,
)
from keyhall.settings import load_settings

if TYPE_CHECKING:  # the jobs load only when serving
    from keyhall.jobs import PeriodicJob


def _runtime() -> Runtime:
    runtime = Runtime.build(load_settings())
    runtime.database.migrate()
    return runtime


def _context() -> Context:
    return Context(principal=SYSTEM, request_id=None, now=utcnow())


def _print(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


def _fail(exc: KeyhallError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(2)


@click.group()
def main() -> None:
    """Keyhall: self-hosted enterprise single sign-on."""


# uvloop (the event loop) and httptools (the HTTP/1.1 parser) are dependencies: both cut the
# server's CPU per request well below asyncio's loop and h11. uvloop has no Windows build.
_LOOP = "asyncio" if sys.platform == "win32" else "uvloop"


def _server_options() -> dict[str, Any]:
    # Uvicorn's own proxy-header handling (on by default, trusting 127.0.0.1 or FORWARDED_ALLOW_IPS)
    # would rewrite the client address from X-Forwarded-For before Keyhall sees it: off, so that
    # KEYHALL_TRUSTED_PROXIES alone decides whose header is believed (keyhall.security.forwarded).
    return {"log_config": None, "access_log": False, "proxy_headers": False, "loop": _LOOP, "http": "httptools"}


def worker_app() -> FastAPI:
    """The app of one ``keyhall serve --workers N`` worker process (a uvicorn factory): the parent
    has migrated the database and runs the background jobs, so a worker only serves."""
    from keyhall.app import create_app
    from keyhall.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, Runtime.build(settings))


def _certificate_watcher(runtime: Runtime) -> PeriodicJob:
    """The background SAML metadata refresh and certificate expiry notices (``keyhall.jobs``)."""
    from keyhall.jobs import CertificateWatcher  # like serve's other jobs: loaded only when serving

    return CertificateWatcher(runtime, interval=runtime.settings.metadata_refresh_seconds)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="server processes sharing the port (one per CPU core is a good start)")
def serve(host: str, port: int, workers: int) -> None:
    """Migrate the database if needed, then serve."""
    import uvicorn

    from keyhall.app import create_app
    from keyhall.jobs import DomainChecker, Purger, WebhookDeliverer
    from keyhall.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    if workers > 1 and settings.metrics_port:
        raise click.UsageError("KEYHALL_METRICS_PORT serves the metrics of one process: with --workers, leave it "
                               "unset (GET /metrics with KEYHALL_METRICS_TOKEN answers for the worker it reaches)")
    runtime = Runtime.build(settings)  # also creates the key file, if any, before workers start
    runtime.database.migrate()  # once, here, before any worker starts
    jobs = [DomainChecker(runtime, interval=settings.domain_check_interval_seconds),
            Purger(runtime, interval=settings.purge_interval_seconds),
            WebhookDeliverer(runtime, interval=settings.webhook_poll_interval_seconds)]
    jobs.append(_certificate_watcher(runtime))
    if workers > 1:
        # The workers are new processes (uvicorn spawns them); the background jobs run once, in
        # this supervising process, rather than once per worker.
        for job in jobs:
            job.start()
        try:
            uvicorn.run("keyhall.cli:worker_app", factory=True, workers=workers, host=host, port=port,
                        **_server_options())
        finally:
            for job in jobs:
                job.stop()
        return
    app = create_app(settings, runtime)
    for job in jobs:
        job.attach(app)
    if settings.metrics_port:
        from keyhall.api.observability import metrics_of, start_metrics_server

        start_metrics_server(metrics_of(app), settings.metrics_port, settings.metrics_host)
    uvicorn.run(app, host=host, port=port, **_server_options())


@main.command()
def migrate() -> None:
    """Bring the database schema to the newest revision."""
    _runtime()
    click.echo("database is up to date")


@main.group()
def org() -> None:
    """Organizations."""


@org.command("create")
@click.argument("name")
@click.option("--slug", default=None, help="URL-safe label (default: from the name)")
def org_create(name: str, slug: str | None) -> None:
    from keyhall.api.native.schemas import organization_out

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        try:
            created = org_service.create_organization(uow, _context(), name, slug)
        except KeyhallError as exc:
            _fail(exc)
    _print(organization_out(created))


@main.group()
def key() -> None:
    """API keys."""


@key.command("create")
@click.option("--org", "org_ref", default=None, help="organization id or slug")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=None)
@click.option("--instance", is_flag=True, help="an instance-admin key (may create organizations)")
@click.option("--name", default=None)
def key_create(org_ref: str | None, role: str | None, instance: bool, name: str | None) -> None:
    """Print a new key's id, secret and bearer token (shown once)."""
    if instance == (org_ref is not None):
        raise click.UsageError("give either --org ORG --role ROLE, or --instance")
    if org_ref is not None and role is None:
        raise click.UsageError("--role is required with --org")
    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        try:
            created, issued = org_service.create_key(uow, _context(), org_ref, Role(role) if role else None, name)
        except KeyhallError as exc:
            _fail(exc)
    _print({"key_id": created.id, "secret": issued.secret, "token": issued.token,
            "organization_id": created.organization_id, "role": role or "instance_admin"})


@main.group()
def app() -> None:
    """Applications: the products that sign people in through Keyhall."""


@app.command("create")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, help="exact redirect URI (repeatable)")
@click.option("--public", is_flag=True, help="a public client (no secret; PKCE required)")
@click.option("--alg", "id_token_alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True)
def app_create(name: str, redirect_uris: tuple[str, ...], public: bool, id_token_alg: str) -> None:
    """Register an OIDC client; prints client_id and (for confidential clients) client_secret once."""
    from keyhall.core.application_service import create_application

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        try:
            created, secret = create_application(uow, uow.applications, _context(), name=name,
                                                 redirect_uris=list(redirect_uris), public=public,
                                                 id_token_alg="ES256" if id_token_alg == "ES256" else "RS256")
        except KeyhallError as exc:
            _fail(exc)
    _print({"client_id": created.id, "client_secret": secret, "name": created.name,
            "redirect_uris": created.redirect_uris, "public": created.public,
            "issuer": runtime.settings.public_url})


@main.group()
def domains() -> None:
    """Claimed email domains."""


@domains.command("check")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="at most this many domains (those due for a check, longest unchecked first)")
def domains_check(limit: int) -> None:
    """Re-check claimed domains' DNS TXT records now, as the background checker does."""
    from keyhall.jobs import check_domains

    _print(check_domains(_runtime(), limit=limit))


@main.command()
def purge() -> None:
    """Delete expired sign-in state now, as the background purge does: sign-in transactions,
    authorization codes, refresh tokens of dead families, SAML replay-cache rows, rate counters,
    audit events older than KEYHALL_AUDIT_RETENTION_DAYS (0 keeps them) and events (with their
    webhook deliveries) older than KEYHALL_EVENT_RETENTION_DAYS. Prints the counts."""
    from keyhall.jobs import purge as purge_once

    _print(purge_once(_runtime()))


@main.group("signing-keys")
def signing_keys() -> None:
    """Keys that sign the ID and access tokens products receive."""


@signing_keys.command("rotate")
@click.option("--alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True)
def signing_keys_rotate(alg: str) -> None:
    """Start signing with a new key; the old one stays in the JWKS until its tokens expire."""
    from keyhall.provider.signing import rotate

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        new = rotate(uow.signing_keys, alg, utcnow())
        uow.commit()
    _print({"kid": new.kid, "alg": new.alg})


@main.group("sp-keys")
def sp_keys() -> None:
    """Keyhall's own keys as a SAML service provider (one per SAML connection)."""


@sp_keys.command("rotate")
@click.argument("connection_id")
@click.option("--activate-after-days", type=click.FloatRange(min=0), default=7.0, show_default=True,
              help="how long the next key is published in the SP metadata before it becomes active")
def sp_keys_rotate(connection_id: str, activate_after_days: float) -> None:
    """Stage the connection's next SP key: published in its SP metadata (signing and encryption) now,
    decrypting beside the current key at once, active after the publication period."""
    from datetime import timedelta  # like the other commands: loaded only when this one runs

    from keyhall.core.sp_key_rollover import stage_next_sp_key  # only when this command runs
    from keyhall.protocols.saml.certificates import isoformat_z  # only when this command runs

    runtime = _runtime()
    try:
        with runtime.database.unit_of_work() as uow:
            staged = stage_next_sp_key(uow, connection_id, actor=SYSTEM.actor, now=runtime.clock(),
                                       activate_after=timedelta(days=activate_after_days))
            uow.commit()
    except KeyhallError as exc:
        _fail(exc)
    assert staged.next_activates_at is not None
    _print({"connection_id": connection_id, "next_certificate": staged.next_certificate,
            "activates_at": isoformat_z(staged.next_activates_at)})


@main.group()
def keys() -> None:
    """Encryption keys for stored secrets."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Add a new encryption key and re-encrypt every stored secret with it.

    With KEYHALL_SECRET_KEYS set, put the new key first in that variable yourself (``keyhall keys
    rotate`` then re-encrypts under it); with the key file in the data directory, a new key is
    generated and written first in the file.
    """
    settings = load_settings()
    if settings.secret_keys:
        click.echo("KEYHALL_SECRET_KEYS is set: re-encrypting under its first key", err=True)
        keys_now = parse_key_list(settings.secret_keys)
    else:
        # The file gains the new key before anything is re-encrypted with it, so a crash
        # part-way leaves every secret readable.
        keys_now = [new_key(), *load_or_create_key_file(settings.secret_keys_file)]
        write_key_file(settings.secret_keys_file, keys_now)
    box = SecretBox(keys_now)
    runtime = Runtime.build(settings)
    runtime.database.migrate()
    count = 0
    with runtime.database.unit_of_work() as uow:
        for connection_id, blob in uow.connections.all_sealed_secrets():
            uow.connections.replace_sealed_secret(connection_id, box.reseal(blob))
            count += 1
        for kid, blob in uow.signing_keys.all_sealed():
            uow.signing_keys.replace_sealed(kid, box.reseal(blob))
            count += 1
        for endpoint_id, blob in uow.webhooks.all_sealed_secrets():
            uow.webhooks.replace_sealed_secret(endpoint_id, box.reseal(blob))
            count += 1
        for connection_id, blob in uow.certificate_watch.all_sealed_secrets():  # staged and previous SP keys
            uow.certificate_watch.replace_sealed_secret(connection_id, box.reseal(blob))
            count += 1
        uow.commit()
    _print({"reencrypted": count, "keys": len(keys_now)})


if __name__ == "__main__":  # pragma: no cover
    main()
