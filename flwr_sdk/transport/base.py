"""The small interface every transport implements, and the settings they all take."""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from flwr_sdk.common.message import Message
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.wire.base import Reconnect, RunInfo


@dataclass(frozen=True)
class TransportSettings:
    """Validated ``start_client`` arguments that concern the connection."""

    server_address: str
    max_message_length: int
    root_certificates: bytes | None  # PEM, already loaded and checked
    insecure: bool
    authentication_keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey] | None
    #: ``max_retries`` / ``max_wait_time`` as a policy, for transports that retry single
    #: calls inside a session (Fleet API); ``None`` means "retry without limit".
    retry: RetryPolicy | None = None


class Connection(abc.ABC):
    """One open session with a server.

    The node loop calls :meth:`receive` until it returns a :class:`Reconnect`, answers
    every :class:`Message` with exactly one :meth:`send`, and finally :meth:`close`.
    Methods raise :class:`flwr_sdk.errors.ServerUnavailableError` when the server cannot
    be reached (the loop reconnects) and other :class:`flwr_sdk.errors.TransportError`
    subclasses for failures that must not be retried.
    """

    #: Seconds to wait before calling :meth:`receive` again after it returned None.
    poll_interval: float = 0.0

    #: Whether the protocol can carry an error reply (Fleet API: yes; grpc-bidi: no, a
    #: failed instruction is reported by dropping the stream).
    supports_error_replies: bool = True

    @property
    def line_name(self) -> str | None:
        """The Flower wire line the session speaks (``"1.12"``); None where lines agree."""
        return None

    @property
    @abc.abstractmethod
    def node_id(self) -> int:
        """The id the server gave this node (-1 on transports without node ids)."""

    @abc.abstractmethod
    async def receive(self) -> Message | Reconnect | None:
        """Wait for the next instruction; None means "nothing yet, poll again later"."""

    @abc.abstractmethod
    async def send(self, reply: Message) -> None:
        """Deliver the reply to the instruction last received."""

    async def idle(self) -> None:
        """Wait before the next :meth:`receive` after one returned None.

        :attr:`poll_interval` seconds; a wrapper may cut the wait short (a swarm wakes
        its idle nodes when one of them got work, :mod:`flwr_sdk.swarm.wake`).
        """
        await asyncio.sleep(self.poll_interval)

    async def run_info(self, run_id: int) -> RunInfo:
        """Describe a run; transports without a run concept return an empty config."""
        return RunInfo(run_id=run_id)

    @abc.abstractmethod
    async def close(self) -> None:
        """Leave the server and free every channel.

        Unregisters the node where the protocol has one. Safe to call more than once;
        never raises for network errors.
        """


class Connector(abc.ABC):
    """Opens connections of one transport kind to one server."""

    #: Transport name as ``start_client`` spells it, e.g. ``"grpc-bidi"``.
    name: str = ""

    @abc.abstractmethod
    async def connect(self) -> Connection:
        """Open a session (and register the node where the protocol has one)."""
