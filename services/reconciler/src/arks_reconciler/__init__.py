"""arks_reconciler: the Arks control plane (reconcile core, platforms, engine load)."""
