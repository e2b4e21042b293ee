"""One module per suite; each declares ``SUITE = registry.Suite(...)`` (see suites.registry)."""
