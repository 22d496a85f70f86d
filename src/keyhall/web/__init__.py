"""The web-facing surface: the hosted sign-in pages, the SAML endpoints and the app-facing OpenID
provider endpoints (``/oauth2/*``, ``/.well-known``), with their templates and static files. Handlers
parse, make one call into ``keyhall.login`` or ``keyhall.provider`` and render."""
