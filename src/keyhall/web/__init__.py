"""The web-facing surface: the hosted sign-in pages, the SAML endpoints, the app-facing OpenID
provider endpoints (``/oauth2/*``, ``/.well-known``) and the setup portal (``/portal/``), with their
templates and static files. Handlers parse, make one call into ``keyhall.login``,
``keyhall.provider`` or the core's services, and render."""
