"""Network plumbing shared by the client transports and the reference server (layer 2).

Tuned grpclib / h2 endpoints, message-size limits, framing, the fast-codec glue and TLS
contexts. This is the only package that reaches into a dependency's private internals;
each such access is named in :mod:`flwr_sdk.net.grpc_tuning`'s docstring.
"""
