"""flwr-sdk: a protocol-first, code-generated client SDK for Flower servers."""

__version__ = "0.1.0"
