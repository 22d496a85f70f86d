"""The app-facing OpenID provider: products sign their users in through Keyhall with standard
OpenID Connect (authorization code flow with PKCE, refresh tokens)."""
