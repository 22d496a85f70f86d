"""Development mode (``KEYHALL_DEV=1``, set by ``make run``): a test identity provider under
``/_dev/idp/`` (OIDC: ``keyhall.dev.idp`` on Authlib; SAML: ``keyhall.dev.saml_pages`` on
pysaml2), an example product under ``/_dev/app`` (``keyhall.dev.app``)
and the demo organization, application and connection that join them (``keyhall.dev.seed``).

Only ``keyhall.app`` imports this package, and only when ``settings.dev`` is true: outside
development mode none of these paths exist (they answer 404).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from keyhall.dev import app as example_app
from keyhall.dev import idp, saml_pages
from keyhall.dev.saml_idp import DevSamlIdp, xmlsec_available
from keyhall.dev.seed import seed
from keyhall.runtime import Runtime

log = logging.getLogger(__name__)


def install(app: FastAPI, runtime: Runtime) -> None:
    """Serve the test IdP and the example product, and seed the demo tenant (idempotent)."""
    log.warning("development mode (KEYHALL_DEV): anyone who reaches this server can sign in to the demo "
                "organization as a sample person at /_dev/idp/; never use it in a deployment")
    app.state.dev_idp = idp.DevIdp.for_settings(runtime.settings)
    app.state.dev_oidc = app.state.dev_idp.server()
    app.state.dev_saml = None
    if xmlsec_available():
        app.state.dev_saml = DevSamlIdp(runtime.settings.public_url, app.state.dev_idp.issuer,
                                        runtime.settings.data_dir)
    else:
        log.warning("development mode: the test IdP's SAML side is off (install the xmlsec1 program, "
                    "Debian package xmlsec1); only its OpenID Connect side is seeded")
    app.include_router(idp.router)
    app.include_router(saml_pages.router)
    app.include_router(example_app.router)
    app.state.dev_demo = seed(runtime, app.state.dev_idp, app.state.dev_saml)
