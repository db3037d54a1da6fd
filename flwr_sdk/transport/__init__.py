"""Transports that connect a client node to a Flower server, and their shared pieces.

Shared building blocks live in ``address`` (server address parsing), ``tls`` (root
certificates, SSL contexts, TLS error classification), ``retry`` (reconnection policy),
``grpc_tuning`` (tuned grpclib endpoints) and ``limits`` (gRPC message-size limits). Each
transport (``grpc_bidi``, ``grpc_rere``, ``rest``) is its own module; import the one you
need, this package does not import them.
"""
