"""Fixtures for every test tier (tests/ and examples/): see tests/upstream/fixtures.py."""

pytest_plugins = ["tests.upstream.fixtures"]
