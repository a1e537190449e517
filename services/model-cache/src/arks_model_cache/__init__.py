"""arks_model_cache."""
