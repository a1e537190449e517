"""arks_router: the OpenAI-compatible data plane of Arks (see docs/router.md)."""
