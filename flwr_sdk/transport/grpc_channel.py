"""Create the grpclib channels of the gRPC transports from validated settings.

Every channel is tuned for big messages (see :mod:`flwr_sdk.net.grpc_tuning`), uses
the generated fast codec (:class:`~flwr_sdk.net.fast_codec.FastProtoCodec`) and
enforces ``grpc_max_message_length`` in both directions before a body is allocated. With
untested grpclib / h2 versions (or ``FLWR_SDK_STOCK_GRPCLIB=1``) the channels are stock
grpclib ones instead (:mod:`flwr_sdk.net.grpclib_internals`): same messages and limits,
received bodies checked after they are read, slower for large messages.

Every channel also watches its connection (:mod:`flwr_sdk.net.grpc_tuning`, "Liveness"):
keepalive PINGs after 30 s without a received byte (20 s for the ACK) and a 60-s progress
deadline while the server owes bytes; a dead connection fails its calls with
``ServerUnavailableError``, so the usual retry path reconnects. The settings are
:data:`CLIENT_TUNING` (tests replace it with short periods).
"""

from __future__ import annotations

import ssl

from grpclib.client import Channel

from flwr_sdk.net.fast_codec import FastProtoCodec
from flwr_sdk.net.grpc_tuning import DEFAULT_TUNING, GrpcTuning, TunedChannel
from flwr_sdk.net.tls import client_ssl_context
from flwr_sdk.transport.address import GrpcTarget, parse_grpc_address
from flwr_sdk.transport.base import TransportSettings

#: The HTTP/2 tuning and liveness settings of every channel the transports create (read
#: when a channel is created).
CLIENT_TUNING: GrpcTuning = DEFAULT_TUNING


class GrpcChannelFactory:
    """Makes channels to one server with one set of security and size settings."""

    def __init__(self, settings: TransportSettings) -> None:
        self.settings = settings
        self.target: GrpcTarget = parse_grpc_address(settings.server_address)
        self._ssl: ssl.SSLContext | None = (
            None
            if settings.insecure
            else client_ssl_context(settings.root_certificates, alpn=["h2"])
        )

    @property
    def uses_tls(self) -> bool:
        """Whether channels from this factory use TLS."""
        return self._ssl is not None

    def create(self) -> Channel:
        """A new channel (it connects lazily, on the first request).

        Messages go through the generated fast codec: large requests are sent piece by
        piece without being joined, large responses are received into one buffer and
        decoded as views of it.
        """
        return TunedChannel(
            self.target.host,
            self.target.port,
            ssl=self._ssl,
            codec=FastProtoCodec(chunked=True),
            max_message_length=self.settings.max_message_length,
            tuning=CLIENT_TUNING,
        )
