"""Node authentication of Flower 1.15 (signed timestamps, flower-1.15.md §0 item 1, §6).

Checked against flwr 1.15.2's own code in its venv (``tests/support/flwr_worker.py``):
the SuperLink's ``AuthenticateServerInterceptor`` judges the metadata our
:class:`SignedTimestampAuth` makes, and flwr's ``AuthenticateClientInterceptor`` signs
calls our :func:`verify_call` must accept. Refusals must agree, reason text included.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr_sdk_proto.v1_15.flwr import proto as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.flower_env import FlowerWorker

from flwr_sdk.wire.base import Metadata, NodeKeys
from flwr_sdk.wire.v1_15 import LINE
from flwr_sdk.wire.v1_15_auth import (
    PUBLIC_KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AuthRefusedError,
    SignedTimestampAuth,
    public_key_pem,
    verify_call,
)

HEADERS = (PUBLIC_KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
MISSING = "Missing authentication metadata"
BAD_SIGNATURE = "Invalid signature"
BAD_TIMESTAMP = "Invalid timestamp"

# The orders of the two curves' base points: private scalars are 1 .. order - 1.
CURVE_ORDERS: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "SECP384R1": (
        ec.SECP384R1,
        int(
            "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
            "581a0db248b0a77aecec196accc52973",
            16,
        ),
    ),
    "SECP256R1": (
        ec.SECP256R1,
        int("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16),
    ),
}


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def keys_for(curve: str = "SECP384R1", scalar: int | None = None) -> NodeKeys:
    cls, _ = CURVE_ORDERS[curve]
    private = (
        ec.generate_private_key(cls()) if scalar is None else ec.derive_private_key(scalar, cls())
    )
    return private, private.public_key()


def call_metadata(auth: SignedTimestampAuth) -> Metadata:
    return auth.call_metadata(LINE.rpcs.register, LINE.register_request(30.0))


def to_json(metadata: Metadata) -> dict[str, dict[str, str]]:
    return {
        key: {"b64": base64.b64encode(value).decode("ascii")}
        if isinstance(value, bytes)
        else {"str": value}
        for key, value in metadata.items()
    }


def from_json(encoded: dict[str, dict[str, str]]) -> Metadata:
    return {
        key: base64.b64decode(value["b64"]) if "b64" in value else value["str"]
        for key, value in encoded.items()
    }


def flwr_verdict(worker: FlowerWorker, metadata: Metadata, method: str = "CreateNode") -> str:
    """ "" when flwr's SuperLink interceptor lets the call through, else its reason."""
    reply = worker.request("verify_signed_call", metadata=to_json(metadata), method=method)
    if reply["accepted"]:
        return ""
    assert reply["code"] == "UNAUTHENTICATED", reply
    reason: str = reply["reason"]
    return reason


def our_verdict(metadata: Metadata) -> str:
    try:
        verify_call(metadata)
    except AuthRefusedError as refused:
        return refused.reason
    return ""


def flwr_signed(worker: FlowerWorker, curve: str = "SECP384R1") -> Metadata:
    return from_json(worker.request("sign_call", curve=curve)["metadata"])


# ------------------------------------------------------------------ accepted by flwr


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    key=st.sampled_from(sorted(CURVE_ORDERS)).flatmap(
        lambda curve: st.tuples(st.just(curve), st.integers(1, CURVE_ORDERS[curve][1] - 1))
    )
)
def test_our_signed_calls_are_accepted_by_flwr(
    flwr_1_15_worker: FlowerWorker, key: tuple[str, int]
) -> None:
    keys = keys_for(*key)
    auth = SignedTimestampAuth(keys)
    metadata = call_metadata(auth)
    assert set(metadata) == set(HEADERS)
    assert metadata[PUBLIC_KEY_HEADER] == auth.public_key_pem == public_key_pem(keys[1])
    assert isinstance(metadata[SIGNATURE_HEADER], bytes)
    assert isinstance(metadata[TIMESTAMP_HEADER], str)
    assert metadata[TIMESTAMP_HEADER].endswith("+00:00")
    assert flwr_verdict(flwr_1_15_worker, metadata) == ""
    assert verify_call(metadata) == public_key_pem(keys[1])


def test_flwr_signed_calls_are_accepted_by_us(flwr_1_15_worker: FlowerWorker) -> None:
    for curve in ("SECP384R1", "SECP256R1"):
        metadata = flwr_signed(flwr_1_15_worker, curve)
        assert set(metadata) == set(HEADERS)
        pem = metadata[PUBLIC_KEY_HEADER]
        assert isinstance(pem, bytes)
        assert verify_call(metadata) == pem
        key = serialization.load_pem_public_key(pem)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == curve.lower()
        # And the same headers are what flwr's SuperLink accepts (the check itself agrees).
        assert flwr_verdict(flwr_1_15_worker, metadata) == ""


def test_flwr_sees_a_new_key_only_on_create_node(flwr_1_15_worker: FlowerWorker) -> None:
    """Every call but CreateNode needs a key that registered a node (the session's order)."""
    metadata = call_metadata(SignedTimestampAuth(None))
    assert flwr_verdict(flwr_1_15_worker, metadata, method="Ping") == "Invalid node ID"


def test_without_keys_every_session_has_a_fresh_secp384r1_key(
    flwr_1_15_worker: FlowerWorker,
) -> None:
    sessions = [SignedTimestampAuth(None), SignedTimestampAuth(None), LINE.node_auth(None)]
    pems = set()
    for auth in sessions:
        assert isinstance(auth, SignedTimestampAuth)
        key = serialization.load_pem_public_key(auth.public_key_pem)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp384r1"
        pems.add(auth.public_key_pem)
        metadata = call_metadata(auth)
        assert metadata[PUBLIC_KEY_HEADER] == auth.public_key_pem
        assert flwr_verdict(flwr_1_15_worker, metadata) == ""
    assert len(pems) == len(sessions)


def test_user_keys_are_used_as_given() -> None:
    keys = keys_for("SECP256R1")
    auth = LINE.node_auth(keys)
    assert isinstance(auth, SignedTimestampAuth)
    assert auth.public_key_pem == public_key_pem(keys[1])
    first, second = call_metadata(auth), call_metadata(auth)
    assert first[PUBLIC_KEY_HEADER] == second[PUBLIC_KEY_HEADER]
    assert verify_call(first) == verify_call(second) == public_key_pem(keys[1])


def test_every_rpc_carries_the_headers() -> None:
    auth = SignedTimestampAuth(keys_for())
    node = pb.Node(node_id=2**63 + 1)
    requests = {
        LINE.rpcs.register: LINE.register_request(30.0),
        LINE.rpcs.heartbeat: LINE.heartbeat_request(node, 30.0),
        LINE.rpcs.pull: LINE.pull_request(node),
        LINE.rpcs.get_run: LINE.get_run_request(node, 5),
        LINE.rpcs.get_fab: LINE.get_fab_request(node, "ab", 5),
        LINE.rpcs.unregister: LINE.unregister_request(node),
    }
    for rpc, request in requests.items():
        assert set(auth.call_metadata(rpc, request)) == set(HEADERS), rpc.name


# ------------------------------------------------------------------ refused by both


def _tamper_signature(metadata: Metadata) -> Metadata:
    signature = metadata[SIGNATURE_HEADER]
    assert isinstance(signature, bytes)
    return {**metadata, SIGNATURE_HEADER: signature[:-1] + bytes([signature[-1] ^ 0x01])}


def _other_key(metadata: Metadata) -> Metadata:
    return {**metadata, PUBLIC_KEY_HEADER: public_key_pem(keys_for()[1])}


def _other_timestamp(metadata: Metadata) -> Metadata:
    stamp = datetime.datetime.fromisoformat(str(metadata[TIMESTAMP_HEADER]))
    later = stamp + datetime.timedelta(microseconds=1)
    return {**metadata, TIMESTAMP_HEADER: later.isoformat()}


def _without(header: str) -> Callable[[Metadata], Metadata]:
    def drop(metadata: Metadata) -> Metadata:
        return {key: value for key, value in metadata.items() if key != header}

    return drop


def _keep(metadata: Metadata) -> Metadata:
    return metadata


CASES: list[tuple[str, float, Callable[[Metadata], Metadata], str]] = [
    # id, clock offset (s), change to the metadata, the SuperLink's reason
    ("tampered-signature", 0.0, _tamper_signature, BAD_SIGNATURE),
    ("other-key", 0.0, _other_key, BAD_SIGNATURE),
    ("signature-of-another-timestamp", 0.0, _other_timestamp, BAD_SIGNATURE),
    ("20s-old", -20.0, _keep, BAD_TIMESTAMP),
    ("10s-in-the-future", 10.0, _keep, BAD_TIMESTAMP),
    ("no-public-key", 0.0, _without(PUBLIC_KEY_HEADER), MISSING),
    ("no-timestamp", 0.0, _without(TIMESTAMP_HEADER), MISSING),
    ("no-signature", 0.0, _without(SIGNATURE_HEADER), MISSING),
    ("nothing", 0.0, lambda _md: {}, MISSING),
    # Inside the window (-5 s, +15 s): accepted by both.
    ("12s-old", -12.0, _keep, ""),
    ("3s-in-the-future", 3.0, _keep, ""),
]


@pytest.mark.parametrize(
    ("offset", "change", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("curve", ["SECP384R1", "SECP256R1"])
def test_refusals_agree_with_flwr(
    flwr_1_15_worker: FlowerWorker,
    curve: str,
    offset: float,
    change: Callable[[Metadata], Metadata],
    reason: str,
) -> None:
    def clock() -> datetime.datetime:
        return utc_now() + datetime.timedelta(seconds=offset)

    metadata = change(call_metadata(SignedTimestampAuth(keys_for(curve), clock=clock)))
    assert flwr_verdict(flwr_1_15_worker, metadata) == reason
    assert our_verdict(metadata) == reason


# ------------------------------------------------------------ the window, exactly


@pytest.mark.parametrize(
    ("lag", "accepted"),
    [(0.0, True), (14.9, True), (15.0, False), (-4.9, True), (-5.0, False), (3600.0, False)],
)
def test_timestamp_window_is_open_at_both_ends(lag: float, accepted: bool) -> None:
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc)
    metadata = call_metadata(SignedTimestampAuth(keys_for(), clock=lambda: moment))
    now = moment + datetime.timedelta(seconds=lag)
    if accepted:
        assert verify_call(metadata, now=now) == metadata[PUBLIC_KEY_HEADER]
    else:
        with pytest.raises(AuthRefusedError, match=BAD_TIMESTAMP):
            verify_call(metadata, now=now)


def test_garbage_values_are_refused_by_us() -> None:
    metadata = call_metadata(SignedTimestampAuth(keys_for()))
    cases: list[tuple[dict[str, Any], str]] = [
        ({PUBLIC_KEY_HEADER: b"not a key"}, BAD_SIGNATURE),
        ({SIGNATURE_HEADER: b""}, BAD_SIGNATURE),
        ({TIMESTAMP_HEADER: "yesterday"}, BAD_SIGNATURE),  # the signature covers it
    ]
    for change, reason in cases:
        with pytest.raises(AuthRefusedError) as info:
            verify_call({**metadata, **change})
        assert info.value.reason == reason
