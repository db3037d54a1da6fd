"""Wire-line detection (``flwr_sdk.wire.detect``) with scripted probers.

The table of ``detect.py``'s docstring — what real 1.12 and 1.15 SuperLinks answer to
each line's pull RPC — is replayed here; the connector test runs detection against the
in-memory 1.12 Fleet before registering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

import pytest
from support.fake_fleet import NODE, FakeCaller, Fleet

from flwr_sdk.errors import ServerUnavailableError, WireLineError
from flwr_sdk.transport.base import TransportSettings
from flwr_sdk.transport.fleet_session import FleetConnector, FleetSession
from flwr_sdk.transport.retry import RetryPolicy
from flwr_sdk.wire.base import FleetLine, Rpc
from flwr_sdk.wire.detect import Probe, ProbeOutcome, detect_line
from flwr_sdk.wire.lines import all_lines, get_line

LINE_12, LINE_15 = get_line("1.12"), get_line("1.15")
ANSWERED, UNAUTHENTICATED = ProbeOutcome.ANSWERED, ProbeOutcome.UNAUTHENTICATED
ABSENT, OTHER = ProbeOutcome.ABSENT, ProbeOutcome.OTHER
REFUSED = ProbeOutcome.REFUSED


class ScriptedProber:
    """Answers each probed RPC (by name) from a script; records what was probed."""

    def __init__(self, script: Mapping[str, Probe | Exception]) -> None:
        # Servers before 1.42 lack ActivateNode (HTTP 404; gRPC answers as in SERVERS).
        self.script = {"ActivateNode": Probe(ABSENT, "HTTP 404"), **script}
        self.probed: list[str] = []
        self.calls: list[Any] = []

    async def __call__(self, rpc: Rpc, call: Any = None) -> Probe:
        await asyncio.sleep(0)
        self.probed.append(rpc.name)
        self.calls.append(call)
        answer = self.script.get(rpc.name)
        if answer is None:
            raise AssertionError(f"{rpc.name} should not have been probed")
        if isinstance(answer, Exception):
            raise answer
        return answer


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


def detect(prober: ScriptedProber, chosen: FleetLine | None = None) -> FleetLine:
    line: FleetLine = run(detect_line(prober, all_lines(), chosen))
    return line


# The table in detect.py's docstring: server → (PullMessages, PullTaskIns) answers.
SERVERS: dict[str, dict[str, Probe | Exception]] = {
    "1.12-grpc-rere": {
        "PullMessages": Probe(ABSENT, "UNIMPLEMENTED 'Method not found!'"),
        "PullTaskIns": Probe(ANSWERED, "OK"),
    },
    "1.12-grpc-rere-auth": {
        "PullMessages": Probe(OTHER, "UNKNOWN 'Unexpected error in interceptor'"),
        "PullTaskIns": Probe(UNAUTHENTICATED, "UNAUTHENTICATED 'Access denied'"),
    },
    "1.15-grpc-rere": {
        "PullMessages": Probe(UNAUTHENTICATED, "UNAUTHENTICATED 'Missing authentication metadata'"),
    },
    "1.12-rest": {
        "PullMessages": Probe(ABSENT, "HTTP 404"),
        "PullTaskIns": Probe(ANSWERED, "HTTP 200"),
    },
    "1.15-rest": {
        "PullMessages": Probe(ANSWERED, "HTTP 200"),
    },
    "1.15-grpc-rere-signed-activate": {
        "ActivateNode": Probe(UNAUTHENTICATED, "UNAUTHENTICATED 'Invalid node ID'"),
        "PullMessages": Probe(UNAUTHENTICATED, "UNAUTHENTICATED 'Missing authentication metadata'"),
    },
    "1.42-http": {
        "ActivateNode": Probe(REFUSED, "HTTP 412"),
    },
    "1.42-grpc": {
        "ActivateNode": Probe(REFUSED, "FAILED_PRECONDITION '{\"code\": 2004}'"),
    },
}
EXPECTED = {
    "1.12-grpc-rere": ("1.12", ["ActivateNode", "PullMessages", "PullTaskIns"]),
    "1.12-grpc-rere-auth": ("1.12", ["ActivateNode", "PullMessages", "PullTaskIns"]),
    "1.15-grpc-rere": ("1.15", ["ActivateNode", "PullMessages"]),
    "1.12-rest": ("1.12", ["ActivateNode", "PullMessages", "PullTaskIns"]),
    "1.15-rest": ("1.15", ["ActivateNode", "PullMessages"]),
    "1.15-grpc-rere-signed-activate": ("1.15", ["ActivateNode", "PullMessages"]),
    "1.42-http": ("1.42", ["ActivateNode"]),
    "1.42-grpc": ("1.42", ["ActivateNode"]),
}


def test_lines_are_probed_newest_first() -> None:
    assert [line.name for line in all_lines()] == ["1.42", "1.15", "1.12"]
    assert LINE_15.rpcs.pull.name == "PullMessages"
    assert LINE_12.rpcs.pull.name == "PullTaskIns"


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_detection_table(server: str) -> None:
    prober = ScriptedProber(SERVERS[server])
    line = detect(prober)
    name, probed = EXPECTED[server]
    assert line is get_line(name)
    assert prober.probed == probed  # newest first, stopping at the first spoken line


@pytest.mark.parametrize(
    "script",
    [
        {"PullMessages": Probe(ABSENT, "HTTP 404"), "PullTaskIns": Probe(ABSENT, "HTTP 404 b")},
        {
            "PullMessages": Probe(OTHER, "UNKNOWN 'x'"),
            "PullTaskIns": Probe(OTHER, "INTERNAL 'y'"),
        },
    ],
    ids=["both-absent", "both-other"],
)
def test_a_server_speaking_neither_line_is_refused(script: dict[str, Probe]) -> None:
    prober = ScriptedProber(script)
    with pytest.raises(WireLineError) as info:
        detect(prober)
    text = str(info.value)
    assert prober.probed == ["ActivateNode", "PullMessages", "PullTaskIns"]
    for rpc, probe in script.items():
        assert f"{rpc} → {probe.detail}" in text
    assert "1.42, 1.15, 1.12" in text  # the supported lines
    assert "none of the supported" in text


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_chosen_line_the_server_speaks_is_used(server: str) -> None:
    name, probed = EXPECTED[server]
    prober = ScriptedProber(SERVERS[server])
    assert detect(prober, get_line(name)) is get_line(name)
    assert prober.probed == probed  # still newest first: 1.15 refuses PullTaskIns too


@pytest.mark.parametrize(
    ("chosen", "server"),
    [
        ("1.15", "1.12-grpc-rere"),
        ("1.15", "1.12-grpc-rere-auth"),
        ("1.15", "1.12-rest"),
        ("1.12", "1.15-grpc-rere"),  # its UNAUTHENTICATED must not pass for 1.12
        ("1.12", "1.15-rest"),
    ],
)
def test_chosen_line_the_server_lacks_names_the_line_it_speaks(chosen: str, server: str) -> None:
    speaks, probed = EXPECTED[server]
    prober = ScriptedProber(SERVERS[server])
    with pytest.raises(WireLineError) as info:
        detect(prober, get_line(chosen))
    text = str(info.value)
    assert f"it speaks the {get_line(speaks).title}" in text
    assert f"wire={chosen!r}" in text
    assert f"does not speak the {get_line(chosen).title}" in text
    for rpc in probed:
        assert f"{rpc} → {prober.script[rpc].detail}" in text  # type: ignore[union-attr]
    assert "1.42, 1.15, 1.12" in text
    assert prober.probed == probed


@pytest.mark.parametrize("chosen", ["1.12", "1.15"])
def test_chosen_line_on_a_server_plainly_lacking_it(chosen: str) -> None:
    line = get_line(chosen)
    script = {
        "PullMessages": Probe(OTHER, "UNKNOWN 'x'"),
        "PullTaskIns": Probe(OTHER, "UNKNOWN 'y'"),
        line.rpcs.pull.name: Probe(ABSENT, "HTTP 404"),
    }
    prober = ScriptedProber(script)
    with pytest.raises(WireLineError, match="it speaks no supported line") as info:
        detect(prober, line)
    assert f"{line.rpcs.pull.name} → HTTP 404" in str(info.value)
    assert prober.probed == ["ActivateNode", "PullMessages", "PullTaskIns"]


UNCLASSIFIABLE = {
    "PullMessages": Probe(OTHER, "UNKNOWN 'x'"),
    "PullTaskIns": Probe(OTHER, "INTERNAL 'y'"),
}


@pytest.mark.parametrize(
    ("chosen", "script"),
    [
        ("1.12", UNCLASSIFIABLE),
        ("1.15", UNCLASSIFIABLE),
        ("1.12", {**UNCLASSIFIABLE, "PullMessages": Probe(ABSENT, "HTTP 404")}),
        ("1.15", {**UNCLASSIFIABLE, "PullTaskIns": Probe(ABSENT, "HTTP 404")}),
    ],
    ids=["1.12", "1.15", "1.12-other-absent", "1.15-other-absent"],
)
def test_chosen_line_with_an_unclassifiable_answer_is_used(
    chosen: str, script: dict[str, Probe]
) -> None:
    line = get_line(chosen)
    prober = ScriptedProber(script)
    assert detect(prober, line) is line
    assert prober.probed == ["ActivateNode", "PullMessages", "PullTaskIns"]


@pytest.mark.parametrize("chosen", [None, "1.12", "1.15"])
@pytest.mark.parametrize("at", ["PullMessages", "PullTaskIns"])
def test_an_unreachable_server_propagates(chosen: str | None, at: str) -> None:
    script: dict[str, Probe | Exception] = {
        "PullMessages": Probe(ABSENT, "UNIMPLEMENTED"),
        "PullTaskIns": Probe(ABSENT, "UNIMPLEMENTED"),
        at: ServerUnavailableError("connection refused"),
    }
    prober = ScriptedProber(script)
    with pytest.raises(ServerUnavailableError, match="connection refused"):
        detect(prober, None if chosen is None else get_line(chosen))


# ----------------------------------------------------------------- in the connector


async def _no_sleep(_seconds: float) -> None:
    await asyncio.sleep(0)


def test_connector_probes_before_registering_and_announces_the_line_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = Fleet()
    settings = TransportSettings(
        server_address="127.0.0.1:9092",
        max_message_length=1024,
        root_certificates=None,
        insecure=True,
        authentication_keys=None,
        retry=RetryPolicy(3, None, sleep=_no_sleep),
    )
    callers: list[FakeCaller] = []

    def new_caller(auth: Any) -> FakeCaller:
        caller = FakeCaller(fleet, auth)
        callers.append(caller)
        return caller

    async def scenario() -> None:
        connector = FleetConnector("grpc-rere", settings, new_caller)
        for expected_node in (NODE, NODE + 1):
            fleet.next_node = expected_node
            session = await connector.connect()
            assert isinstance(session, FleetSession)
            assert session.line is LINE_12
            assert session.node_id == expected_node
            await session.close()

    with caplog.at_level(logging.INFO, logger="flwr_sdk"):
        run(scenario())
    announcements = [
        r for r in caplog.records if "SuperLink speaks the Flower 1.12 Fleet API" in r.getMessage()
    ]
    assert len(announcements) == 1
    assert announcements[0].levelno == logging.INFO
    registrations = [i for i, call in enumerate(fleet.calls) if call == "CreateNode"]
    assert len(registrations) == 2
    first, second = registrations
    probes = ["probe ActivateNode", "probe PullMessages", "probe PullTaskIns"]
    assert fleet.calls[:first] == probes
    assert fleet.calls[first:second][-3:] == probes
    assert not any(call.startswith("probe") for call in fleet.calls[second:])
    assert all(caller.closed for caller in callers)  # probe callers are closed too


def test_the_1_42_probe_is_a_signed_activation_of_a_throwaway_key() -> None:
    prober = ScriptedProber(SERVERS["1.42-http"])
    assert detect(prober) is get_line("1.42")
    call = prober.calls[0]
    assert call is not None and call.auth is not None
    assert call.request.public_key == call.auth.public_key_pem
    assert call.request.heartbeat_interval == 30.0
    headers = call.auth.http_headers(call.rpc, call.request)
    assert set(headers) == {"flwr-public-key", "flwr-timestamp", "flwr-signature"}
    # A second detection signs with another key: nothing of a probe is reused.
    again = ScriptedProber(SERVERS["1.42-grpc"])
    detect(again)
    assert again.calls[0].auth.public_key_pem != call.auth.public_key_pem


def test_1_15_refusing_the_signed_activation_is_not_taken_for_1_42() -> None:
    # 1.15's interceptor refuses a key it does not know before any method is looked up.
    prober = ScriptedProber(SERVERS["1.15-grpc-rere-signed-activate"])
    assert detect(prober) is LINE_15


def test_keys_on_rest_are_refused_once_the_line_turns_out_to_have_no_http_auth() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    from flwr_sdk.errors import TransportError

    key = ec.generate_private_key(ec.SECP384R1())
    fleet = Fleet()
    settings = TransportSettings(
        server_address="http://127.0.0.1:9093",
        max_message_length=1024,
        root_certificates=None,
        insecure=True,
        authentication_keys=(key, key.public_key()),
        retry=RetryPolicy(0, None, sleep=_no_sleep),
    )
    connector = FleetConnector("rest", settings, lambda auth: FakeCaller(fleet, auth))
    with pytest.raises(TransportError, match="no node authentication over HTTP"):
        run(connector.connect())
    assert "CreateNode" not in fleet.calls  # refused before registering
