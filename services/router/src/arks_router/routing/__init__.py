"""Routing strategies: small pure modules behind one interface (see `base`)."""
