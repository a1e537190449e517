"""arks_router."""
