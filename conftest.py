"""Repository-wide pytest configuration: the shared fixtures of arks_common.testing."""

pytest_plugins = ["arks_common.testing.plugin"]
