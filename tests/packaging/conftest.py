"""Fixtures shared by the packaging tests, defined in helpers.py."""

from helpers import processes  # noqa: F401
