"""Registering the products that use Keyhall (instance admins only)."""

from __future__ import annotations

from keyhall.core import audit
from keyhall.core.access import require_instance_admin
from keyhall.core.applications import (
    Application,
    SigningAlg,
    check_backchannel_logout_uri,
    check_post_logout_redirect_uris,
    check_redirect_uri,
    new_application,
)
from keyhall.core.connection_service import Context
from keyhall.core.ports import ApplicationRepository, UnitOfWork
from keyhall.errors import InvalidInput, NotFound


def create_application(uow: UnitOfWork, apps: ApplicationRepository, ctx: Context, *, name: str,
                       redirect_uris: list[str], public: bool, id_token_alg: SigningAlg = "RS256",  # noqa: S107
                       allowed_scopes: list[str] | None = None, post_logout_redirect_uris: list[str] | None = None,
                       backchannel_logout_uri: str | None = None) -> tuple[Application, str | None]:
    require_instance_admin(ctx.principal)
    app, secret = new_application(name, redirect_uris, public=public, now=ctx.now, id_token_alg=id_token_alg,
                                  allowed_scopes=allowed_scopes, post_logout_redirect_uris=post_logout_redirect_uris,
                                  backchannel_logout_uri=backchannel_logout_uri)
    apps.add(app)
    uow.audit.add(audit.event(
        organization_id=None, actor=ctx.principal.actor, action="application.created", target_type="application",
        target_id=app.id, request_id=ctx.request_id, now=ctx.now,
        changes={"name": {"from": None, "to": app.name}, "redirect_uris": {"from": None, "to": app.redirect_uris},
                 "post_logout_redirect_uris": {"from": None, "to": app.post_logout_redirect_uris},
                 "backchannel_logout_uri": {"from": None, "to": app.backchannel_logout_uri}},
    ))
    uow.commit()
    return app, secret


def list_applications(apps: ApplicationRepository, ctx: Context) -> list[Application]:
    require_instance_admin(ctx.principal)
    return list(apps.list_all())


def get_application(apps: ApplicationRepository, ctx: Context, client_id: str) -> Application:
    require_instance_admin(ctx.principal)
    app = apps.get(client_id)
    if app is None:
        raise NotFound("application not found")
    return app


def update_application(uow: UnitOfWork, apps: ApplicationRepository, ctx: Context, client_id: str, *,
                       name: str | None, redirect_uris: list[str] | None,
                       post_logout_redirect_uris: list[str] | None = None,
                       backchannel_logout_uri: str | None = None, clear_backchannel_logout_uri: bool = False,
                       ) -> Application:
    """Change what is given; ``clear_backchannel_logout_uri`` removes the back-channel URI."""
    app = get_application(apps, ctx, client_id)
    before = _audited(app)
    if name is not None:
        if not 1 <= len(name.strip()) <= 128:
            raise InvalidInput("name: must be 1-128 characters", field="name")
        app.name = name.strip()
    if redirect_uris is not None:
        if not redirect_uris:
            raise InvalidInput("redirect_uris: at least one is required", field="redirect_uris")
        app.redirect_uris = [check_redirect_uri(u) for u in dict.fromkeys(redirect_uris)]
    if post_logout_redirect_uris is not None:
        app.post_logout_redirect_uris = check_post_logout_redirect_uris(post_logout_redirect_uris)
    if clear_backchannel_logout_uri:
        app.backchannel_logout_uri = None
    elif backchannel_logout_uri is not None:
        app.backchannel_logout_uri = check_backchannel_logout_uri(backchannel_logout_uri)
    app.updated_at = ctx.now
    apps.save(app)
    uow.audit.add(audit.event(
        organization_id=None, actor=ctx.principal.actor, action="application.updated", target_type="application",
        target_id=app.id, request_id=ctx.request_id, now=ctx.now,
        changes=audit.diff(before, _audited(app)),
    ))
    uow.commit()
    return app


def _audited(app: Application) -> dict[str, object]:
    return {"name": app.name, "redirect_uris": list(app.redirect_uris),
            "post_logout_redirect_uris": list(app.post_logout_redirect_uris),
            "backchannel_logout_uri": app.backchannel_logout_uri}


def delete_application(uow: UnitOfWork, apps: ApplicationRepository, ctx: Context, client_id: str) -> None:
    app = get_application(apps, ctx, client_id)
    apps.delete(app.id)
    uow.audit.add(audit.event(
        organization_id=None, actor=ctx.principal.actor, action="application.deleted", target_type="application",
        target_id=app.id, request_id=ctx.request_id, now=ctx.now,
    ))
    uow.commit()
