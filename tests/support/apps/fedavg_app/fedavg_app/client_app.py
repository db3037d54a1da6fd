"""Placeholder ClientApp: a FAB must name one; the tests' clients are flwr-sdk nodes."""

from flwr.client import ClientApp

app = ClientApp()
