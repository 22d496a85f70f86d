"""The ``keyhall`` command line (also ``python -m keyhall``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from keyhall import __version__
from keyhall.core import org_service
from keyhall.core.access import SYSTEM
from keyhall.core.connection_service import Context
from keyhall.core.ports import Page
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
from keyhall.settings import Settings, load_settings

T = TypeVar("T")

def _settings() -> Settings:
    """The settings, after a warning on stderr when this command is about to create a data
    directory nobody named (the default ``./data`` under the current directory is missing): run
    elsewhere than the server's directory, a command would otherwise quietly start a second,
    empty installation."""
    settings = load_settings()
    uses_data_dir = settings.database_url is None or settings.secret_keys is None
    if uses_data_dir and "data_dir" not in settings.model_fields_set and not settings.data_dir.exists():
        click.echo(f"warning: no data directory at {settings.data_dir.resolve()}: creating a new one (a new "
                   "database and key file). To use an existing installation, run from its directory or give "
                   "--data-dir DIR (or KEYHALL_DATA_DIR).", err=True)
    return settings


def _runtime(settings: Settings | None = None) -> Runtime:
    """The runtime of this command, migrated; its connections close when the command ends."""
    runtime = Runtime.build(settings or _settings())
    click.get_current_context().call_on_close(runtime.database.dispose)
    runtime.database.migrate()
    return runtime


def _context() -> Context:
    return Context(principal=SYSTEM, request_id=None, now=utcnow())


def _print(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, indent=2))


def _fail(exc: KeyhallError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(2)


def _call(action: Callable[[], T]) -> T:
    """``action()``, or exit 2 with its error's message."""
    try:
        return action()
    except KeyhallError as exc:
        _fail(exc)
        raise  # pragma: no cover - _fail exits


def _all_pages(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


@click.group()
@click.version_option(__version__, prog_name="keyhall")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="the installation's data directory (default: KEYHALL_DATA_DIR, else ./data)")
def main(data_dir: Path | None) -> None:
    """Keyhall: self-hosted enterprise single sign-on."""
    if data_dir is not None:
        # Through the environment, so `serve --workers N`'s worker processes read the same one.
        os.environ["KEYHALL_DATA_DIR"] = str(data_dir)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="KEYHALL_HOST", show_envvar=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), envvar="KEYHALL_PORT",
              show_envvar=True)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="server processes sharing the port (one per CPU core is a good start)")
def serve(host: str, port: int, workers: int) -> None:
    """Migrate the database if needed, then serve. Without KEYHALL_PUBLIC_URL, the public URL is
    http://HOST:PORT (127.0.0.1 for a wildcard host)."""
    from keyhall.logs import configure_logging
    from keyhall.serving import address_problem, public_url_for
    from keyhall.serving import serve as run_server

    settings = _settings()
    if workers > 1 and settings.metrics_port:
        raise click.UsageError("KEYHALL_METRICS_PORT serves the metrics of one process: with --workers, leave it "
                               "unset (GET /metrics with KEYHALL_METRICS_TOKEN answers for the worker it reaches)")
    problem = address_problem(host, port)
    if problem:
        click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    run_server(settings.model_copy(update={"public_url": public_url_for(settings, host, port)}), host, port, workers)


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


@org.command("list")
def org_list() -> None:
    """Print every organization (oldest first) as JSON."""
    from keyhall.api.native.schemas import organization_out

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        orgs = list(_all_pages(lambda cursor: org_service.list_organizations(uow, _context(), limit=200,
                                                                             cursor=cursor)))
    _print({"data": [organization_out(o) for o in orgs]})


@org.command("delete")
@click.argument("org_ref", metavar="ORG")
def org_delete(org_ref: str) -> None:
    """Delete an organization (id or slug) with its connections, domains, users and keys."""
    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        found = _call(lambda: org_service.get_organization(uow, _context(), org_ref))
        _call(lambda: org_service.delete_organization(uow, _context(), found.id))
    _print({"deleted": True, "id": found.id, "slug": found.slug})


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


@key.command("list")
@click.option("--org", "org_ref", required=True, help="organization id or slug")
def key_list(org_ref: str) -> None:
    """Print an organization's keys (never their secrets), revoked ones included, as JSON."""
    from keyhall.api.native.schemas import key_out

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        keys = _call(lambda: list(_all_pages(lambda cursor: org_service.list_keys(
            uow, _context(), org_ref, limit=200, cursor=cursor))))
    _print({"data": [key_out(k) for k in keys]})


@key.command("revoke")
@click.argument("key_id")
@click.option("--org", "org_ref", default=None, help="only if the key belongs to this organization (id or slug)")
def key_revoke(key_id: str, org_ref: str | None) -> None:
    """Revoke an API key (an organization's or an instance-admin key) at once; prints it."""
    from keyhall.api.native.schemas import key_out

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        revoked = _call(lambda: org_service.revoke_key(uow, _context(), org_ref, key_id))
    _print(key_out(revoked))


@main.group()
def app() -> None:
    """Applications: the products that sign people in through Keyhall."""


@app.command("create")
@click.option("--name", required=True)
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, help="exact redirect URI (repeatable)")
@click.option("--public", is_flag=True, help="a public client (no secret; PKCE required)")
@click.option("--alg", "id_token_alg", type=click.Choice(["RS256", "ES256"]), default="RS256", show_default=True)
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True,
              help="where /oauth2/logout may send the person back, exact (repeatable)")
@click.option("--backchannel-logout-uri", default=None, help="where logout tokens are POSTed when a session ends")
def app_create(name: str, redirect_uris: tuple[str, ...], public: bool, id_token_alg: str,
               post_logout_redirect_uris: tuple[str, ...], backchannel_logout_uri: str | None) -> None:
    """Register an OIDC client; prints client_id and (for confidential clients) client_secret once."""
    from keyhall.core.application_service import create_application

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        try:
            created, secret = create_application(uow, uow.applications, _context(), name=name,
                                                 redirect_uris=list(redirect_uris), public=public,
                                                 id_token_alg="ES256" if id_token_alg == "ES256" else "RS256",
                                                 post_logout_redirect_uris=list(post_logout_redirect_uris),
                                                 backchannel_logout_uri=backchannel_logout_uri)
        except KeyhallError as exc:
            _fail(exc)
    _print({"client_id": created.id, "client_secret": secret, "name": created.name,
            "redirect_uris": created.redirect_uris, "public": created.public,
            "post_logout_redirect_uris": created.post_logout_redirect_uris,
            "backchannel_logout_uri": created.backchannel_logout_uri, "issuer": runtime.settings.public_url})


@app.command("list")
def app_list() -> None:
    """Print every registered application (never its secret) as JSON."""
    from keyhall.api.native.applications import application_out
    from keyhall.core.application_service import list_applications

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        apps = list_applications(uow.applications, _context())
    _print({"data": [application_out(a) for a in apps]})


@app.command("delete")
@click.argument("client_id")
def app_delete(client_id: str) -> None:
    """Delete an application: its client can no longer sign anyone in."""
    from keyhall.core.application_service import delete_application

    runtime = _runtime()
    with runtime.database.unit_of_work() as uow:
        _call(lambda: delete_application(uow, uow.applications, _context(), client_id))
    _print({"deleted": True, "client_id": client_id})


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
    webhook deliveries) older than KEYHALL_EVENT_RETENTION_DAYS, sign-in traces older than
    KEYHALL_TRACE_RETENTION_DAYS. Prints the counts."""
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
    settings = _settings()
    if settings.secret_keys:
        click.echo("KEYHALL_SECRET_KEYS is set: re-encrypting under its first key", err=True)
        keys_now = parse_key_list(settings.secret_keys)
    else:
        # The file gains the new key before anything is re-encrypted with it, so a crash
        # part-way leaves every secret readable.
        keys_now = [new_key(), *load_or_create_key_file(settings.secret_keys_file)]
        write_key_file(settings.secret_keys_file, keys_now)
    box = SecretBox(keys_now)
    runtime = _runtime(settings)
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
