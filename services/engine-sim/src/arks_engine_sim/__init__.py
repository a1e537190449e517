"""arks_engine_sim."""
