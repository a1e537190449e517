"""Arks shared contracts."""
