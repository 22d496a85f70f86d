"""Runtime sign-in flows: a protocol result from the organization's IdP becomes a provisioned
user and an authorization code for the product."""
