"""What a node reports while it runs against the reference server, on every transport.

The reference server runs in process (tests/server/server_harness.py); the node is
``start_client_async`` / ``start_client`` in this thread. A 12 MiB model makes every
transfer report progress. Real Flower servers: tests/interop/test_failures_reach_user.py.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from server_harness import ServerThread, server_thread

import flwr_sdk
from flwr_sdk.common.ndarrays import ndarrays_to_parameters
from flwr_sdk.events import (
    TRANSFER_PROGRESS_STEP,
    Connected,
    Disconnected,
    InstructionReceived,
    NodeEvent,
    Registered,
    ReplySent,
    Stopped,
    TransferProgress,
)
from flwr_sdk.server import FedAvg, ServerConfig

ROUNDS = 2
MODEL = [np.ones(3 * 1024 * 1024, dtype=np.float32)]  # 12 MiB: three progress steps
TRANSPORTS = ["grpc-rere", "rest", "grpc-bidi"]


class Trainer(flwr_sdk.NumPyClient):
    """Adds 1 to the model in place (a writable receive buffer); fails when told to."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        if self.fail:
            raise ValueError("bad shape")
        parameters[0] += 1
        return parameters, 10, {}

    def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
        return 0.5, 10, {}


@pytest.fixture(autouse=True)
def _collect_server_leftovers() -> Iterator[None]:
    """Finalise what a stopped server thread left behind at a known point.

    When a grpc-bidi node drops its stream, the reference server's Join handler leaves a
    pending ``StreamIterator.__anext__`` coroutine on its (then closed) loop; finalised by
    a garbage collection that happens to run inside ``ast.parse``, it trips CPython
    3.11's "AST constructor recursion depth mismatch". Collect right after each test.
    """
    yield
    gc.collect()


def config(transport: str) -> ServerConfig:
    strategy = FedAvg(
        min_fit_clients=1,
        min_evaluate_clients=1,
        min_available_clients=1,
        initial_parameters=ndarrays_to_parameters(MODEL),
        seed=0,
    )
    return ServerConfig(transport=transport, port=0, num_rounds=ROUNDS, strategy=strategy)


def serve_rounds(
    server: ServerThread, transport: str, client: flwr_sdk.NumPyClient, on_event: Any
) -> dict[str, Any]:
    """Run ROUNDS rounds with one node; stop the node (Fleet API) once they are done."""
    server.start_rounds()

    async def node() -> None:
        task = asyncio.create_task(
            flwr_sdk.start_client_async(
                server_address=server.address,
                client=client,
                transport=transport,
                max_retries=0,
                on_event=on_event,
            )
        )
        done = asyncio.get_running_loop().run_in_executor(None, server.history, 120.0)
        await asyncio.wait({task, done}, return_when=asyncio.FIRST_COMPLETED)
        await done
        # On grpc-bidi the server ends the session itself (unless the node was away
        # rejoining when the run finished); on the Fleet API the node serves on.
        await asyncio.wait({task}, timeout=10 if transport == "grpc-bidi" else 0.2)
        if task.done():
            task.result()
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(node())
    history: dict[str, Any] = server.history(1.0).to_dict()
    return history


def without_progress(events: list[NodeEvent]) -> list[str]:
    return [type(e).__name__ for e in events if not isinstance(e, TransferProgress)]


def check_progress(events: list[NodeEvent]) -> list[tuple[str, str]]:
    """Each run of TransferProgress is one transfer 0 → total; return (direction, before)."""
    transfers: list[tuple[str, str]] = []
    run: list[TransferProgress] = []
    for event in [*events, None]:
        if isinstance(event, TransferProgress) and not (run and run[-1].done == run[-1].total):
            run.append(event)
            continue
        if run:
            assert len({p.direction for p in run}) == 1, run
            assert run[0].done == 0 and run[-1].done == run[-1].total, run
            assert all(p.total == run[0].total for p in run), run
            middle = [p.done for p in run[1:-1]]
            assert middle == sorted(middle), run
            assert run[0].total >= 3 * TRANSFER_PROGRESS_STEP and len(run) >= 4, run
            assert event is not None
            transfers.append((run[0].direction, type(event).__name__))
            run = []
        if isinstance(event, TransferProgress):
            run.append(event)
    return transfers


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_events_arrive_in_order_with_transfer_progress(transport: str) -> None:
    events: list[NodeEvent] = []
    with server_thread(config(transport)) as server:
        history = serve_rounds(server, transport, Trainer(), events.append)
    assert all(r["fit_results"] == 1 for r in history["rounds"].values()), history
    fleet = transport != "grpc-bidi"
    names = without_progress(events)
    assert names == [
        "Connected",
        *(["Registered"] if fleet else []),
        *(["InstructionReceived", "ReplySent"] * 2 * ROUNDS),
        "Disconnected",
        "Stopped",
    ], names
    connected = events[0]
    assert isinstance(connected, Connected)
    assert connected.transport == transport
    assert connected.line == ("1.12" if fleet else None)
    if fleet:
        assert isinstance(events[1], Registered) and events[1].node_id > 0
    received = [e for e in events if isinstance(e, InstructionReceived)]
    assert [e.message_type for e in received] == ["train", "evaluate"] * ROUNDS
    assert all(e.size >= MODEL[0].nbytes for e in received)
    sent = [e for e in events if isinstance(e, ReplySent)]
    assert [e.size >= MODEL[0].nbytes for e in sent] == [True, False] * ROUNDS
    assert not any(e.failed for e in sent)
    # The model moves in with every instruction and out with every fit reply.
    assert (
        check_progress(events)
        == [
            ("receive", "InstructionReceived"),
            ("send", "ReplySent"),
            ("receive", "InstructionReceived"),
        ]
        * ROUNDS
    )
    disconnected, stopped = events[-2:]
    assert isinstance(disconnected, Disconnected) and not disconnected.will_reconnect
    assert disconnected.reason == (
        "the node was stopped" if fleet else "the server ended the session"
    )
    assert isinstance(stopped, Stopped) and stopped.error is None
    assert stopped.summary.handled == {"train": ROUNDS, "evaluate": ROUNDS}


@pytest.mark.parametrize("transport", ["grpc-bidi", "rest"])
def test_a_raising_callback_does_not_break_the_node(transport: str) -> None:
    calls: list[NodeEvent] = []

    def broken(event: NodeEvent) -> None:
        calls.append(event)
        raise RuntimeError("display crashed")

    with server_thread(config(transport)) as server:
        history = serve_rounds(server, transport, Trainer(), broken)
    for rnd in history["rounds"].values():
        assert (rnd["fit_results"], rnd["fit_failures"]) == (1, 0), history
        assert (rnd["evaluate_results"], rnd["evaluate_failures"]) == (1, 0), history
    assert isinstance(calls[-1], Stopped)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_failures_are_counted_and_summarised(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[NodeEvent] = []
    with caplog.at_level("INFO", logger="flwr_sdk"), server_thread(config(transport)) as server:
        history = serve_rounds(server, transport, Trainer(fail=True), events.append)
    for rnd in history["rounds"].values():
        assert (rnd["fit_results"], rnd["fit_failures"]) == (0, 1), history
    stopped = events[-1]
    assert isinstance(stopped, Stopped)
    assert stopped.summary.failed == {"train": ROUNDS}
    expected = f"{ROUNDS} of {ROUNDS} train instructions failed (first: ValueError: bad shape)"
    assert stopped.summary.describe() == expected
    node_lines = [r for r in caplog.records if r.name == "flwr_sdk.node"]
    assert [r.levelname for r in node_lines if r.getMessage() == f"Node stopped: {expected}"] == [
        "ERROR"
    ]
    assert len([r for r in node_lines if r.exc_info]) == ROUNDS  # one traceback per failure


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fail_fast_raises_the_users_exception_after_leaving(transport: str) -> None:
    raised: list[BaseException] = []

    class Failing(Trainer):
        def fit(self, parameters, config):  # type: ignore[no-untyped-def]
            raised.append(ValueError("bad shape"))
            raise raised[-1]

    events: list[NodeEvent] = []
    with server_thread(config(transport)) as server:
        server.start_rounds()
        with pytest.raises(ValueError, match="bad shape") as caught:
            flwr_sdk.start_client(
                server_address=server.address,
                client=Failing(),
                transport=transport,
                fail_fast=True,
                on_event=events.append,
            )
        # The node left: unregistered (Fleet API) or its stream closed (grpc-bidi).
        online: Callable[[], list[int]] = server.server.pool.online_nodes
        for _ in range(50):
            if not server.in_loop(online):
                break
            time.sleep(0.05)
        assert server.in_loop(online) == []
    assert caught.value is raised[0]
    assert any(frame.name == "fit" for frame in _frames(caught.value))
    assert [type(e).__name__ for e in events][-3:] == [
        *(["ReplySent"] if transport != "grpc-bidi" else ["InstructionFailed"]),
        "Disconnected",
        "Stopped",
    ]
    stopped = events[-1]
    assert isinstance(stopped, Stopped) and stopped.error == "ValueError: bad shape"
    assert threading.current_thread() is threading.main_thread()


def _frames(exc: BaseException) -> list[Any]:
    import traceback

    return list(traceback.extract_tb(exc.__traceback__))
