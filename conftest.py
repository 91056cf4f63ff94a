"""Root conftest: the shared fixtures (namespace, broker, database) for every test suite."""

pytest_plugins = ["smsgw_shared.testing.plugin"]
