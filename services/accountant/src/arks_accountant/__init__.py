"""arks_accountant."""
