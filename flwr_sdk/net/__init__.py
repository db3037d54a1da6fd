"""Network plumbing shared by the client transports and the reference server (layer 2).

Tuned grpclib / h2 endpoints, message-size limits, framing, the fast-codec glue and TLS
contexts. Every access to a private attribute of grpclib / h2 / hyperframe lives in
:mod:`flwr_sdk.net.grpclib_internals`, which names each one, checks the installed versions
against the tested ones and otherwise makes the endpoints fall back to stock grpclib.
"""
