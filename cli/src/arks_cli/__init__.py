"""arks_cli."""
