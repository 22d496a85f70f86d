"""Property-based fuzzing of Keyhall's HTTP surfaces (OpenAPI operations and hostile raw input)."""
