"""A node's Fleet API session, the same on every wire line and transport.

One :class:`FleetSession` is one registered node. It is given a wire line's adapter
(:class:`~flwr_sdk.wire.base.FleetLine`: what each request is and what each response
means), a :class:`FleetCaller` (one transport's way of making one call) and a
:class:`~flwr_sdk.wire.base.NodeAuth` (what each call carries), and imports no line.
Below, the calls are named as the 1.12 line names them. The flow (Flower's, with its
gaps closed):

0. :meth:`FleetConnector.connect` first finds out (or checks) the line the server speaks:
   one unauthenticated probe per line (:mod:`flwr_sdk.wire.detect`), on a channel of its
   own that is closed before the session opens. A connector given a line already
   detected (a swarm probes once for all its nodes) skips the probes until one of its
   sessions was registered and ended.
1. ``CreateNode(ping_interval=30)`` → the node (:meth:`FleetSession.open`). Not retried
   here: the node loop retries the whole :meth:`FleetConnector.connect` under the retry
   policy. A session that fails while opening is closed (DeleteNode if a node was
   created, channel closed) before the error propagates.
2. Heartbeat: an asyncio task sends ``Ping(ping_interval=30)`` at once and then every
   ``(30 - 5) * U(0.7, 0.9)`` s (17.5 to 22.5 s), each with a 5 s deadline. Another
   interval ``h`` (``heartbeat_interval``, checked against the line's accepted range:
   1.42 takes 10 to 1800 s) is promised instead (registration and every ping carry it)
   and kept with a ping every ``max(h - 5, h / 2) * U(0.7, 0.9)`` s, each with a
   ``min(5, h)`` s deadline: a longer interval means fewer calls for an idle node, and
   a server that notices a vanished node later (1.12 and 1.15 after ``h`` s, 1.42 after
   ``2 h``). A failing ping
   is retried with the policy's backoff (never giving up on its own: the main calls
   decide when the server is gone). ``Ping -> success=false`` means the SuperLink no
   longer knows the node (it was restarted): the session is marked lost, and the next
   :meth:`~FleetSession.receive` raises :class:`~flwr_sdk.errors.ServerUnavailableError`,
   so the node loop closes the session and registers a new node. (Flower 1.12 silently
   ends its ping thread and polls forever as a node nobody samples.)
3. ``PullTaskIns`` (:meth:`~FleetSession.receive`); no work → the node loop polls again
   after 3 s (:attr:`~FleetSession.poll_interval`).
4. ``GetRun`` once per run (:meth:`~FleetSession.run_info`, cached), and ``GetFab``
   once per run when the run names a FAB; ``run_config`` = the FAB's
   ``[tool.flwr.app.config]`` overlaid with ``Run.override_config``
   (:mod:`flwr_sdk.common.fab`). A failing GetFab, or a FAB that is not usable, means "no FAB"
   and the run config is then ``Run.override_config`` alone. (Flower fetches the FAB for
   every message; a FAB is named by its hash, so once per run is enough.)
5. The node loop handles the message; ``PushTaskRes`` (:meth:`~FleetSession.send`).
6. :meth:`~FleetSession.close`, on every way out: heartbeat cancelled, ``DeleteNode`` (one
   try, :data:`DELETE_NODE_TIMEOUT` deadline, failures only logged), transport closed.

Lines differ in how they say two things, so the session asks the line
(:meth:`~flwr_sdk.wire.base.FleetLine.node_lost`,
:meth:`~flwr_sdk.wire.base.FleetLine.run_ended`): a call refused because the server
forgot the node (1.15: ``UNAUTHENTICATED "Invalid node ID"`` after a restart) marks the
session lost like ``Ping -> success=false``, and the node registers again; a push refused
because the run is no longer running (1.15: ``PERMISSION_DENIED "Run is finished."``) drops
the reply with a warning and the node keeps serving.

Lines also differ in how a node is made and taken away, and in how payload travels; the
session asks the line for these too. Opening makes the calls
:meth:`~flwr_sdk.wire.base.FleetLine.opening_calls` lists (1.12/1.15: CreateNode; 1.42:
RegisterNode — only with a key made for the session — then ActivateNode), and a refusal
the line can explain (:meth:`~flwr_sdk.wire.base.FleetLine.refusal`, e.g. 1.42's "key not
activated", code 2004) is raised as the clearer error; closing makes the calls of
:meth:`~flwr_sdk.wire.base.FleetLine.closing_calls` (1.42: DeactivateNode, then
UnregisterNode when the session registered the node). A pull that the line answers with
an :class:`~flwr_sdk.wire.base.Incoming` (1.42: metadata plus an object tree) is followed
by fetches of its objects, at most :data:`OBJECT_WINDOW` at once, each checked by the line
(on one worker thread, :data:`_CHECKER`, while the next fetches move) before anything
reaches user code; objects the server does not have yet are asked for
again (1 s, doubling to 10 s, ±20 %, for at most :data:`OBJECT_WAIT_LIMIT` s); then the
arrival is confirmed. A push the line builds as an :class:`~flwr_sdk.wire.base.Outgoing`
is followed by uploads of exactly the objects the push response names, at most
:data:`OBJECT_WINDOW` at once. An upload the server answers ``stored=false`` is logged
as a warning and the node goes on: a 1.42 SuperLink says so both for an object it
already holds (another node's identical reply pushed it first, in the same moment) and
for a push session that expired; the node cannot tell which, and the reply's fate is
the server's.
A run that ends meanwhile (:meth:`~flwr_sdk.wire.base.FleetLine.run_ended` on an object
call) drops the instruction or the reply, as on a push.

Failures mid-session follow the retry table (:data:`~flwr_sdk.transport.retry.RETRY_TABLE`,
``docs/reliability.md``): PullTaskIns, PushTaskRes, GetRun and GetFab are each retried
with backoff under the ``max_retries`` / ``max_wait_time`` budget when they fail as
"unreachable" (:class:`~flwr_sdk.errors.ServerUnavailableError`) or with a transient
server error (:class:`~flwr_sdk.errors.TransientServerError`, at most
:data:`~flwr_sdk.transport.retry.TRANSIENT_RETRIES` times), keeping the node, its
registration and a computed reply; when the budget is spent,
:class:`~flwr_sdk.errors.RetriesExhaustedError` ends ``start_client`` (GetRun and GetFab
degrade instead, except when the server is unreachable:
:data:`~flwr_sdk.transport.retry.CALL_RULES`). After a call succeeded only on a retry,
the heartbeat pings at once to find out whether the node survived the outage. Every
other failure (authentication, protocol, message size) is raised at once and never
retried.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import betterproto2

from flwr_sdk.common.fab import FabError, run_config_from_fab
from flwr_sdk.common.message import Message
from flwr_sdk.constants import DEFAULT_MAX_MESSAGE_LENGTH
from flwr_sdk.errors import (
    FlwrSdkError,
    RetriesExhaustedError,
    TransportError,
)
from flwr_sdk.net.fast_codec import pre_encode
from flwr_sdk.transport.base import Connection, Connector, TransportSettings
from flwr_sdk.transport.node_records import NodeRecords
from flwr_sdk.transport.retry import (
    CALL_RULES,
    TRANSIENT_RETRIES,
    Action,
    NodeLostError,
    RetryPolicy,
    RunEndedError,
    call_failure,
    rule_for,
)
from flwr_sdk.wire.base import (
    Call,
    FleetLine,
    Incoming,
    NodeAuth,
    NoNodeAuth,
    Outgoing,
    ProbeCall,
    Rpc,
    RunInfo,
)
from flwr_sdk.wire.detect import Probe, detect_line
from flwr_sdk.wire.lines import all_lines

__all__ = [
    "CALL_TIMEOUT",
    "DATA_CALL_TIMEOUT",
    "DELETE_NODE_TIMEOUT",
    "PING_TIMEOUT",
    "POLL_INTERVAL",
    "FleetCaller",
    "FleetConnector",
    "FleetSession",
    "NodeLostError",
]

log = logging.getLogger("flwr_sdk")

POLL_INTERVAL = 3.0
"""Seconds between two PullTaskIns while there is no work (Flower's fixed interval)."""

PING_TIMEOUT = 5.0
"""Deadline of one Ping, and the margin the heartbeat keeps before ``ping_interval``."""

CALL_TIMEOUT = 30.0
"""Deadline of the small calls: CreateNode, GetRun."""

DATA_CALL_TIMEOUT = 600.0
"""Deadline of the calls that may carry a model: PullTaskIns, PushTaskRes, GetFab."""

DELETE_NODE_TIMEOUT = 3.0
"""Deadline of the single DeleteNode sent when a session closes."""

PROBE_TIMEOUT = 10.0
"""Deadline of a line-detection probe."""

OBJECT_WINDOW = 4
"""Most object fetches (or uploads) of one message in flight at once."""

_CHECKER: ThreadPoolExecutor | None = None
"""The one thread that checks and places fetched objects (made on first use).

A fetched object is hashed (SHA-256 runs without the GIL) and copied into its array
there, while the event loop goes on moving the next objects' bytes. One thread for all
sessions: an instruction's objects are taken in one at a time, never concurrently.
"""

OBJECT_FIRST_WAIT = 1.0
"""Seconds before asking again for an object the server does not have *yet*."""
OBJECT_MAX_WAIT = 10.0
"""Longest wait between two asks for an object that is not available yet."""
OBJECT_WAIT_LIMIT = 600.0
"""Seconds after which objects that never became available drop the instruction."""

_RUN_ROLES = frozenset({"push", "push_object", "pull_object", "confirm"})
"""Calls whose refusal the line may read as "the run is no longer running"."""


class FleetCaller(abc.ABC):
    """One transport's way of making one unary Fleet call (grpc-rere, rest)."""

    @abc.abstractmethod
    async def call(self, rpc: Rpc, request: betterproto2.Message, timeout: float) -> Any:
        """Make one call and return its response (of ``rpc.response_type``).

        The call carries the session's node-auth metadata; where the node-auth object
        names a response-metadata key, the response's values under it go back to it.
        The message of an error about the call starts with ``"<rpc.name> failed: "``
        (a :class:`~flwr_sdk.errors.TLSError` names the host instead), so the session
        never adds the call's name a second time.

        Raises:
            flwr_sdk.errors.ServerUnavailableError: unreachable / unavailable (retryable).
            flwr_sdk.errors.AuthenticationError: the server refused the node's credentials.
            flwr_sdk.errors.TransportError: any other failure.

        """

    @abc.abstractmethod
    async def probe(self, rpc: Rpc, call: ProbeCall | None = None) -> Probe:
        """Call ``rpc`` and classify the answer.

        Without ``call``: an empty request and no credentials. With it: ``call.request``
        (empty when None), carrying ``call.auth``'s metadata when it has one. Used to
        detect the server's wire line (:mod:`flwr_sdk.wire.detect`).

        Raises:
            flwr_sdk.errors.ServerUnavailableError: unreachable (retryable).
            flwr_sdk.errors.TLSError: TLS could not be established.

        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the channel or HTTP client (never raises)."""


class FleetSession(Connection):
    """One registered node on a Fleet API, whatever the line and the transport."""

    poll_interval = POLL_INTERVAL
    supports_error_replies = True

    def __init__(
        self,
        line: FleetLine,
        caller: FleetCaller,
        auth: NodeAuth,
        *,
        retry: RetryPolicy | None,
        rng: random.Random | None = None,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        records: NodeRecords | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        """A session of ``line`` (unopened: :meth:`open` registers the node).

        ``heartbeat_interval``: the seconds between heartbeats the node promises (and
        keeps, see the module docs); None: the line's (30 s, Flower's).

        Raises:
            ValueError: ``heartbeat_interval`` is outside what the line's servers accept
                (:meth:`~flwr_sdk.wire.base.FleetLine.check_heartbeat_interval`).

        """
        self._line = line
        self._records = records if records is not None else NodeRecords()
        self._max_message_length = max_message_length
        self._rpcs = line.rpcs
        self._caller = caller
        self._auth = auth
        self._retry = retry if retry is not None else RetryPolicy(None, None)
        self._ping_interval = line.check_heartbeat_interval(
            line.heartbeat_interval if heartbeat_interval is None else heartbeat_interval
        )
        self._rng = rng if rng is not None else random.Random()
        self._node: Any = None
        self._pull: betterproto2.Message | None = None
        self._node_id: int | None = None
        self._self_registered = False
        self._instruction: Message | None = None
        self._runs: dict[int, RunInfo] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._ping_now = asyncio.Event()
        self._lost = False
        self._closed = False

    # ------------------------------------------------------------------------ flow

    @property
    def line(self) -> FleetLine:
        """The wire line this session speaks."""
        return self._line

    @property
    def line_name(self) -> str:
        """The wire line's short name, e.g. ``"1.12"``."""
        return self._line.name

    @property
    def node_id(self) -> int:
        """The id registration gave this node."""
        if self._node_id is None:
            raise RuntimeError("the session has no node yet (open() was not called)")
        return self._node_id

    @property
    def registered(self) -> bool:
        """Whether :meth:`open` registered a node (whatever happened since)."""
        return self._node_id is not None

    @property
    def lost(self) -> bool:
        """Whether the SuperLink said it no longer knows this node."""
        return self._lost

    async def open(self) -> None:
        """Register the node and start the heartbeat; on failure, undo and close.

        Raises:
            flwr_sdk.errors.TransportError: as the caller does, or as the node-auth
                object decides.

        """
        line = self._line
        try:
            for role, request in line.opening_calls(self._auth, self._ping_interval):
                response = await self._opening_call(role, request)
                self._node = line.node_from_register(response)
                self._node_id = line.node_id(self._node)
                self._self_registered = self._self_registered or role == "register"
            log.info("Registered with the SuperLink as node %d", self._node_id)
            self._auth.check_registered()
            key_id = self._auth.key_id
            if key_id is not None and self._node_id is not None:
                self._records.put(key_id, self._node_id)
        except BaseException:
            await self.close()
            raise
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="flwr-sdk-heartbeat")

    async def _opening_call(self, role: str, request: betterproto2.Message) -> Any:
        """One call that makes the node; a refusal the line explains is raised as such.

        A refusal that may mean "this key's node is still online" (a process that used
        the key died without deactivating) is answered, when a record names that node,
        by deactivating it and trying once more (:mod:`flwr_sdk.transport.node_records`).
        """
        rpc: Rpc = getattr(self._rpcs, role)
        try:
            return await self._caller.call(rpc, request, CALL_TIMEOUT)
        except TransportError as exc:
            if self._line.still_online(role, exc) and await self._deactivate_recorded():
                try:
                    return await self._caller.call(rpc, request, CALL_TIMEOUT)
                except TransportError as again:
                    exc = again
            clearer = self._line.refusal(role, exc)
            if clearer is None:
                raise
            raise clearer from exc

    async def _deactivate_recorded(self) -> bool:
        """Deactivate the node a record names for the user's key; whether it was done."""
        key_id = self._auth.key_id
        node_id = self._records.get(key_id) if key_id is not None else None
        if key_id is None or node_id is None:
            return False
        log.warning(
            "The SuperLink still has node %d of this key online (a process that used the key "
            "did not stop cleanly): deactivating it and activating again",
            node_id,
        )
        node = self._line.node_for_id(node_id)
        for role, request in self._line.closing_calls(node, self_registered=False):
            rpc: Rpc = getattr(self._rpcs, role)
            try:
                await self._caller.call(rpc, request, CALL_TIMEOUT)
            except FlwrSdkError as exc:
                log.warning("%s (node %d)", call_failure(rpc.name, exc), node_id)
                return False
        return True

    async def _retrying(self, role: str, request: betterproto2.Message, timeout: float) -> Any:
        """Make the call of ``role`` (``"pull"``, …), retrying as the retry table says.

        What the line reads as "node unknown" becomes :class:`NodeLostError`, and on a
        push what it reads as "run not running" :class:`RunEndedError`, so that the
        table can tell them apart from other refusals.
        """
        rpc: Rpc = getattr(self._rpcs, role)
        failures = 0

        async def attempt() -> Any:
            nonlocal failures
            try:
                return await self._caller.call(rpc, request, timeout)
            except TransportError as exc:
                if self._line.node_lost(exc):
                    self._lost = True
                    raise NodeLostError(
                        f"the SuperLink no longer knows node {self.node_id}: {exc}"
                    ) from exc
                if role in _RUN_ROLES and self._line.run_ended(exc):
                    raise RunEndedError(str(exc)) from exc
                rule = rule_for(exc)
                if rule is not None and rule.fleet is Action.RETRY:
                    failures += 1
                raise

        special = CALL_RULES.get(role)
        response = await self._retry.run(
            attempt,
            describe=f"{rpc.name} (node {self.node_id})",
            call=rpc.name,
            transient_retries=TRANSIENT_RETRIES
            if special is None or special.transient_retries is None
            else special.transient_retries,
        )
        if failures:
            # The server was away: find out at once whether it still knows this node.
            self._ping_now.set()
        return response

    async def receive(self) -> Message | None:
        """Pull the next instruction; None when there is none (poll again later).

        Raises:
            NodeLostError: the SuperLink no longer knows this node; reconnect.

        """
        if self._lost:
            raise NodeLostError(f"the SuperLink no longer knows node {self.node_id}")
        if self._pull is None:  # the same request on every poll: encoded once
            self._pull = pre_encode(self._line.pull_request(self._node))
        response = await self._retrying("pull", self._pull, DATA_CALL_TIMEOUT)
        pulled = self._line.instruction_from_pull(response, self.node_id)
        if isinstance(pulled, Incoming):
            try:
                message = await self._fetch(pulled)
            except RunEndedError as exc:
                log.warning(
                    "Dropped instruction %s: run %d is no longer running (%s)",
                    pulled.message_id,
                    pulled.run_id,
                    exc,
                )
                return None
        else:
            message = pulled
        if message is None:
            return None
        self._instruction = message
        log.debug(
            "Received %s (run %d, group %r)",
            message.metadata.message_type,
            message.metadata.run_id,
            message.metadata.group_id,
        )
        return message

    async def send(self, reply: Message) -> None:
        """Push the reply to the instruction last received."""
        instruction, self._instruction = self._instruction, None
        if instruction is None:
            raise RuntimeError("send() called without a received instruction")
        request = self._line.push_request(self._node, instruction, reply)
        if request is None:
            log.warning(
                "Not sending the %s reply: instruction %s expired before it was answered",
                reply.metadata.message_type,
                instruction.metadata.message_id,
            )
            return
        try:
            if isinstance(request, Outgoing):
                response = await self._retrying("push", request.request, DATA_CALL_TIMEOUT)
                await self._upload(request, response)
            else:
                await self._retrying("push", request, DATA_CALL_TIMEOUT)
        except RunEndedError as exc:
            log.warning(
                "Dropped the %s reply: run %d is no longer running (%s)",
                reply.metadata.message_type,
                reply.metadata.run_id,
                exc,
            )

    # --------------------------------------------------------------------- objects

    async def _in_window(
        self,
        role: str,
        requests: Iterable[betterproto2.Message],
        each: Callable[[Any, Any], Awaitable[None] | None],
    ) -> None:
        """Make the ``role`` calls of ``requests``, at most :data:`OBJECT_WINDOW` at once.

        ``requests`` is consumed lazily (a request is made only when a slot is free, so
        at most a window of object contents exists at a time), and ``each(request,
        response)`` runs (is awaited, when it is a coroutine function) as each answer
        arrives (answers are not held until all have come). The first failure cancels
        the calls still in flight.
        """
        pending = iter(requests)

        async def worker() -> None:
            for request in pending:  # shared: each worker takes the next request
                response = await self._retrying(role, request, DATA_CALL_TIMEOUT)
                handled = each(request, response)
                if handled is not None:
                    await handled

        tasks = [asyncio.ensure_future(worker()) for _ in range(OBJECT_WINDOW)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, incoming: Incoming) -> Message | None:
        """Fetch an instruction's objects, check them, confirm; the instruction or None."""
        incoming.max_message_length = self._max_message_length
        waits = 0.0
        wait = OBJECT_FIRST_WAIT
        while True:
            await self._in_window("pull_object", incoming.wanted(), _take_into(incoming))
            missing = len(incoming.wanted())
            if not missing:
                break
            if waits >= OBJECT_WAIT_LIMIT:
                self._line.drop(
                    "objects never available",
                    f"instruction {incoming.message_id}: {missing} objects still "
                    f"missing after {waits:g} s",
                )
                return None
            jittered = wait * self._rng.uniform(0.8, 1.2)
            await asyncio.sleep(jittered)
            waits += jittered
            wait = min(wait * 2, OBJECT_MAX_WAIT)
        message = incoming.message()
        await self._confirm(incoming)
        return message

    async def _confirm(self, incoming: Incoming) -> None:
        """Tell the server the instruction arrived; a failure is only logged."""
        rpc = self._rpcs.confirm
        assert rpc is not None
        try:
            await self._retrying("confirm", incoming.confirm_request(), CALL_TIMEOUT)
        except (TransportError, RetriesExhaustedError) as exc:
            if isinstance(exc, RunEndedError) or not CALL_RULES["confirm"].degrades(exc):
                raise
            log.warning(
                "%s (instruction %s)",
                call_failure(rpc.name, _last_failure(exc)),
                incoming.message_id,
            )

    async def _upload(self, outgoing: Outgoing, response: Any) -> None:
        """Upload exactly the reply objects the push response asks for."""
        requests = outgoing.uploads(response)
        refused: list[str] = []

        def check(request: Any, answer: Any) -> None:
            if not outgoing.stored(answer):
                refused.append(str(getattr(request, "object_id", "?")))

        await self._in_window("push_object", requests, check)
        if refused:
            log.warning(
                "The server did not store %d of the reply's objects (%s): it already "
                "holds them (another node pushed the same object) or the push session "
                "expired",
                len(refused),
                ", ".join(refused[:3]) + (", …" if len(refused) > 3 else ""),
            )

    # ------------------------------------------------------------------------ run

    async def run_info(self, run_id: int) -> RunInfo:
        """GetRun (and GetFab when the run has a FAB), once per run; see module docs."""
        cached = self._runs.get(run_id)
        if cached is not None:
            return cached
        try:
            response = await self._retrying(
                "get_run", self._line.get_run_request(self._node, run_id), CALL_TIMEOUT
            )
            # Read inside the try: an answer the line cannot read degrades like a failure.
            info = self._line.run_from_response(response, run_id)
        except (TransportError, RetriesExhaustedError) as exc:
            if not CALL_RULES["get_run"].degrades(exc):
                raise
            log.warning(
                "%s (run %d); using an empty run config",
                call_failure(self._rpcs.get_run.name, _last_failure(exc)),
                run_id,
            )
            info = RunInfo(run_id=run_id)
        else:
            if info.fab_hash:
                info = await self._with_fab_config(info)
        self._runs[run_id] = info
        return info

    async def _with_fab_config(self, info: RunInfo) -> RunInfo:
        request = self._line.get_fab_request(self._node, info.fab_hash, info.run_id)
        try:
            response = await self._retrying("get_fab", request, DATA_CALL_TIMEOUT)
            content = self._line.fab_from_response(response, info.fab_hash)
        except (TransportError, RetriesExhaustedError) as exc:
            if not CALL_RULES["get_fab"].degrades(exc):
                raise
            log.warning(
                "%s (FAB %s); running without a FAB",
                call_failure(self._rpcs.get_fab.name, _last_failure(exc)),
                info.fab_hash[:12],
            )
            return info
        if content is None:
            log.warning("GetFab returned no FAB matching %s: running without one", info.fab_hash)
            return info
        try:
            config = run_config_from_fab(content, info.run_config)
        except FabError as exc:
            log.warning("Ignoring FAB %s: %s", info.fab_hash[:12], exc)
            return info
        return dataclasses.replace(info, run_config=config)

    # ------------------------------------------------------------------- heartbeat

    @property
    def heartbeat_interval(self) -> float:
        """The seconds between heartbeats this node promised the server."""
        return self._ping_interval

    def _next_ping_delay(self) -> float:
        interval = self._ping_interval
        return max(interval - PING_TIMEOUT, interval / 2) * self._rng.uniform(0.7, 0.9)

    async def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` or until a ping is asked for, whichever comes first.

        ``asyncio.wait`` rather than ``wait_for``: on Python 3.11, ``wait_for`` swallows a
        cancellation that arrives as the event is set, and the heartbeat then kept
        :meth:`close` waiting for a whole ping interval.
        """
        waiter = asyncio.ensure_future(self._ping_now.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
        self._ping_now.clear()

    async def _heartbeat_loop(self) -> None:
        """Ping until the session closes or the SuperLink says it lost the node.

        The closing flag is checked after every call and every wait: grpclib may turn a
        cancellation that lands while its connection dies into a StreamTerminatedError,
        so :meth:`close` cannot rely on one ``cancel()`` alone.
        """
        # The same request on every ping: encoded once (metadata, e.g. a signature over
        # the time, is still made per call by the node-auth object).
        request = pre_encode(self._line.heartbeat_request(self._node, self._ping_interval))
        deadline = min(PING_TIMEOUT, self._ping_interval)
        backoff = self._retry.backoff()
        while not self._closed:
            try:
                response = await self._caller.call(self._rpcs.heartbeat, request, deadline)
                # Read inside the try: an answer the line cannot read is a failed ping.
                accepted = self._line.heartbeat_accepted(response)
            except FlwrSdkError as exc:
                if self._closed:
                    return
                if self._line.node_lost(exc):
                    log.warning("The SuperLink no longer knows node %d (%s)", self.node_id, exc)
                    self._lost = True
                    return
                wait = backoff.next_wait()
                log.warning(
                    "%s; next ping in %.1f s", call_failure(self._rpcs.heartbeat.name, exc), wait
                )
                await self._wait(wait)
                continue
            if self._closed:
                return
            backoff.reset()
            if not accepted:
                log.warning(
                    "The SuperLink no longer knows node %d (was it restarted?); registering again",
                    self.node_id,
                )
                self._lost = True
                return
            await self._wait(self._next_ping_delay())

    # ------------------------------------------------------------------------ close

    async def close(self) -> None:
        """Stop the heartbeat, DeleteNode (once, short deadline), close the transport.

        Prompt whatever the heartbeat is doing: the heartbeat is cancelled again and again
        until it has ended (see :meth:`_heartbeat_loop`). A cancellation of the task that
        calls ``close()`` is never swallowed: the heartbeat is still stopped and the
        transport closed (DeleteNode is skipped), then :class:`asyncio.CancelledError` is
        raised again.
        """
        if self._closed:
            return
        self._closed = True
        heartbeat, self._heartbeat = self._heartbeat, None
        try:
            cancelled = heartbeat is not None and await _stop_task(heartbeat)
            if cancelled:
                raise asyncio.CancelledError
            if self._node is not None and not self._lost:
                await self._unregister()
        finally:
            await self._caller.close()

    async def _unregister(self) -> None:
        calls: list[Call] = self._line.closing_calls(self._node, self._self_registered)
        failed = False
        for role, request in calls:
            rpc: Rpc = getattr(self._rpcs, role)
            try:
                await self._caller.call(rpc, request, DELETE_NODE_TIMEOUT)
            except FlwrSdkError as exc:
                failed = True
                log.warning("%s (node %d)", call_failure(rpc.name, exc), self.node_id)
        if not failed and not self._self_registered:
            log.info("Deactivated node %d (its key stays registered)", self.node_id)
        elif not failed:
            log.info("Unregistered node %d", self.node_id)
        if not failed:
            key_id = self._auth.key_id
            if key_id is not None:
                self._records.drop(key_id)


def _take_into(incoming: Incoming) -> Callable[[Any, Any], Awaitable[None]]:
    """Hands each fetch answer to ``incoming`` (one not available yet is asked again).

    ``incoming.take`` (hash check, copy into place) runs on the :data:`_CHECKER` thread,
    so it overlaps the transfers still in flight and no two run at once.
    """
    global _CHECKER
    if _CHECKER is None:
        _CHECKER = ThreadPoolExecutor(1, thread_name_prefix="flwr-sdk-objects")
    checker = _CHECKER

    async def take(request: Any, response: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(checker, incoming.take, request, response)

    return take


def _last_failure(exc: BaseException) -> BaseException:
    """The failure a give-up was about (a RetriesExhaustedError's cause), else ``exc``."""
    if isinstance(exc, RetriesExhaustedError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


STOP_POLL = 0.05
"""Seconds between two cancellations of a background task that is being stopped."""


async def _stop_task(task: asyncio.Task[None]) -> bool:
    """Cancel ``task`` until it has ended; return whether *our* task was cancelled meanwhile.

    One ``cancel()`` is not enough for a task inside a grpclib call: when the connection
    dies at that moment, grpclib turns the cancellation into StreamTerminatedError.
    Whatever ``task`` ends with is retrieved (and dropped).
    """
    cancelled = False
    while not task.done():
        task.cancel()
        try:
            await asyncio.wait({task}, timeout=STOP_POLL)
        except asyncio.CancelledError:
            cancelled = True
    if not task.cancelled() and task.exception() is not None:
        log.debug("The heartbeat ended with %r", task.exception())
    return cancelled


CallerFactory = Callable[[NodeAuth], FleetCaller]
"""Makes one session's caller, given that session's node-auth object."""


class FleetConnector(Connector):
    """Opens :class:`FleetSession` objects over one transport.

    Before each registration the connector finds out which wire line the server speaks
    (:func:`~flwr_sdk.wire.detect.detect_line`: one cheap probe per candidate line),
    or checks the line the user chose; a line detected beforehand (``detected_line``)
    spares the probes until a served session ends. Where the line may hand out a lost node's id
    again (:attr:`~flwr_sdk.wire.base.FleetLine.reissues_lost_node_ids`), such an id is
    refused: registering anew could then only loop.
    """

    def __init__(
        self,
        name: str,
        settings: TransportSettings,
        new_caller: CallerFactory,
        line: FleetLine | None = None,
        *,
        detected_line: FleetLine | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        """A connector of transport ``name``; ``line``: the user's choice (None: detect).

        ``detected_line``: a line already found out for this server by a probe (a swarm
        probes once for all its nodes, :mod:`flwr_sdk.swarm`). It is trusted, without a
        probe of its own, until a session of this connector has been registered and
        ended: the next connection then probes again, because what ends a served session
        (a lost node, a server restart, a ReconnectIns) may have put another server, of
        another line, behind the address. Registrations that fail before a node exists
        keep trusting it.

        ``heartbeat_interval``: every session's (see :class:`FleetSession`); None: the
        line's. Checked against the line's accepted range when a session is made.

        Raises:
            ValueError: ``heartbeat_interval`` is not above 0.

        """
        if heartbeat_interval is not None and not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval}")
        self._heartbeat_interval = heartbeat_interval
        self.name = name
        self._chosen = line
        self._detected = detected_line
        self._settings = settings
        self._new_caller = new_caller
        self._lost_node_ids: set[int] = set()
        self._last: FleetSession | None = None
        self._announced: FleetLine | None = None

    async def line(self) -> FleetLine:
        """The line to speak: the detected line given, else found out (or checked) by a probe."""
        if self._detected is not None:
            return self._detected
        caller = self._new_caller(NoNodeAuth())
        try:
            line = await detect_line(caller.probe, all_lines(), self._chosen)
        finally:
            await caller.close()
        if line is not self._announced:
            log.info("SuperLink speaks the %s", line.title)
            self._announced = line
        return line

    def new_session(self, line: FleetLine) -> FleetSession:
        """A new, unopened session of ``line`` with its own node-auth object and caller.

        Raises:
            ValueError: the connector's ``heartbeat_interval`` is outside what ``line``'s
                servers accept.
            flwr_sdk.errors.TransportError: keys on the rest transport of a line without
                node authentication over HTTP.

        """
        keys = self._settings.authentication_keys
        if keys is not None and self.name == "rest" and not line.node_auth_over_http:
            raise TransportError(
                f"authentication_keys cannot be used on the {line.title} over the rest "
                "transport: it has no node authentication over HTTP (use grpc-rere)"
            )
        if self._heartbeat_interval is not None:  # before a caller (a channel) is made
            line.check_heartbeat_interval(self._heartbeat_interval)
        auth = line.node_auth(keys)
        return FleetSession(
            line,
            self._new_caller(auth),
            auth,
            retry=self._settings.retry,
            max_message_length=self._settings.max_message_length,
            heartbeat_interval=self._heartbeat_interval,
        )

    async def connect(self) -> Connection:
        """Detect the line, register a node and start its heartbeat."""
        last = self._last
        if last is not None and last.registered:
            self._detected = None  # a served session ended: probe the server again
        if last is not None and last.lost and last.line.reissues_lost_node_ids:
            self._lost_node_ids.add(last.node_id)
        session = self.new_session(await self.line())
        self._last = session
        await session.open()
        if session.node_id in self._lost_node_ids:
            await session.close()
            raise TransportError(
                f"the SuperLink handed out node {session.node_id} again, which it had "
                f"reported as unknown (on the {session.line.title}, a SuperLink with node "
                "authentication keeps a key bound to a node it lost); use a new key or "
                "restart the SuperLink"
            )
        return session
