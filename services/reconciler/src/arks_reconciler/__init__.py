"""arks_reconciler."""
