"""Runnable examples of flwr-sdk (executed by the tests)."""
