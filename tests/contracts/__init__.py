"""Arranging helpers shared by the port contract tests in ``tests/integration``."""
