"""Fleet API wire rules of Flower 1.42 (flower-1.42.md §3, §4, §5, §7): the adapter.

Lifecycle calls by mode, refusal codes read from HTTP and gRPC error texts, the pull →
fetch → confirm flow of an instruction's objects (checked, tampering refused), and the
reply's push with exactly the objects the SuperLink asks for. The object format itself
(ids and bytes equal to Flower's) is tested with the codec (``v1_42_objects``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from flwr_sdk_proto.v1_42.flwr import proto as pb

from flwr_sdk.common.message import Error, Message, Metadata
from flwr_sdk.common.records import (
    Array,
    ConfigsRecord,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)
from flwr_sdk.errors import (
    AuthenticationError,
    MalformedMessageError,
    ObjectIntegrityError,
    TransportError,
)
from flwr_sdk.wire.base import Incoming, Outgoing, ProbeOutcome
from flwr_sdk.wire.v1_42 import LINE, SERVER_NODE_ID, error_code
from flwr_sdk.wire.v1_42_auth import SignedCallAuth
from flwr_sdk.wire.v1_42_objects import encode_message

NODE = 2**63 + 4242
RUN = 2**64 - 11
NODE_REF = pb.Node(node_id=NODE)


def instruction(
    *, dst: int = NODE, src_task_id: int | None = 1, created_at: float | None = None
) -> tuple[pb.PullMessagesResponse, dict[str, bytes]]:
    """A pulled train instruction as the SuperLink gives it, and its objects by id."""
    content = RecordSet(
        parameters_records={
            "fitins.parameters": ParametersRecord(
                {"0": Array.from_numpy(np.arange(6, dtype=np.float32))}
            )
        },
        metrics_records={"m": MetricsRecord({"loss": 0.5})},
        configs_records={"fitins.config": ConfigsRecord({"round": 1, "tag": "x"})},
    )
    metadata = Metadata(
        run_id=RUN,
        message_id="",
        src_node_id=SERVER_NODE_ID,
        dst_node_id=dst,
        reply_to_message="",
        group_id="1",
        ttl=3600.0,
        message_type="train",
        created_at=time.time() if created_at is None else created_at,
    )
    encoded = encode_message(Message(metadata, content=content), src_task_id=src_task_id)
    objects = {i: encoded.object_bytes(i) for i in encoded.object_ids()}
    response = pb.PullMessagesResponse(
        messages_list=[encoded.wire_message], message_object_trees=[encoded.tree]
    )
    return response, objects


def fetch(incoming: Incoming, objects: dict[str, bytes]) -> Message | None:
    """Answer every PullObject as the SuperLink does; the assembled instruction."""
    while wanted := incoming.wanted():
        for request in wanted:
            answer = pb.PullObjectResponse(
                object_found=True,
                object_available=True,
                object_content=objects[request.object_id],
            )
            assert incoming.take(request, answer)
    return incoming.message()


def reply_to(message: Message, *, error: bool = False) -> Message:
    md = message.metadata
    metadata = Metadata(
        run_id=md.run_id,
        message_id="",
        src_node_id=NODE,
        dst_node_id=md.src_node_id,
        reply_to_message=md.message_id,
        group_id=md.group_id,
        ttl=md.ttl,
        message_type=md.message_type,
        created_at=max(time.time(), md.created_at + 0.001),
    )
    if error:
        return Message(metadata, error=Error(code=2, reason="boom"))
    return Message(metadata, content=RecordSet(metrics_records={"r": MetricsRecord({"n": 1})}))


# ------------------------------------------------------------------------ lifecycle


def test_a_node_without_keys_registers_then_activates() -> None:
    auth = LINE.node_auth(None)
    calls = LINE.opening_calls(auth, 30.0)
    assert [role for role, _ in calls] == ["register", "activate"]
    register, activate = (request for _, request in calls)
    assert isinstance(register, pb.RegisterNodeFleetRequest)
    assert isinstance(activate, pb.ActivateNodeRequest)
    assert isinstance(auth, SignedCallAuth)
    assert register.public_key == activate.public_key == auth.public_key_pem
    assert activate.heartbeat_interval == 30.0
    # Closing: deactivate, then unregister what the session registered itself.
    closing = LINE.closing_calls(NODE_REF, self_registered=True)
    assert [role for role, _ in closing] == ["deactivate", "unregister"]
    assert all(request.node_id == NODE for _, request in closing)


def test_a_node_with_operator_keys_only_activates_and_never_unregisters() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    auth = LINE.node_auth((key, key.public_key()))
    assert auth.user_keys
    assert [role for role, _ in LINE.opening_calls(auth, 30.0)] == ["activate"]
    assert [role for role, _ in LINE.closing_calls(NODE_REF, self_registered=False)] == [
        "deactivate"
    ]


def test_heartbeat_and_readers() -> None:
    beat = LINE.heartbeat_request(NODE_REF, 30.0)
    assert beat == pb.SendNodeHeartbeatRequest(node=NODE_REF, heartbeat_interval=30.0)
    assert LINE.heartbeat_accepted(pb.SendNodeHeartbeatResponse(success=True))
    assert LINE.node_from_register(pb.ActivateNodeResponse(node_id=NODE)).node_id == NODE
    with pytest.raises(MalformedMessageError):
        LINE.node_from_register(pb.RegisterNodeFleetResponse(node_id=0))


def test_the_probe_is_a_signed_activation_that_only_1_42_refuses_with_a_code() -> None:
    call = LINE.probe_call()
    assert call.rpc.grpc_path == "/flwr.proto.Fleet/ActivateNode"
    assert call.rpc.rest_path == "/v1/fleet/activate-node"
    assert call.spoken == {ProbeOutcome.REFUSED, ProbeOutcome.ANSWERED}
    assert ProbeOutcome.UNAUTHENTICATED not in call.spoken  # 1.15 refuses unknown keys so


# ------------------------------------------------------------------------ refusals

HTTP_2004 = (
    "ActivateNode failed: HTTP 412 from POST /v1/fleet/activate-node: "
    '\'{"code":2004,"detail":"Failed to activate SuperNode."}\''
)
GRPC_2004 = (
    "ActivateNode failed: FAILED_PRECONDITION: "
    '{"code": 2004, "public_message": "Failed to activate SuperNode.", "public_details": null}'
)


@pytest.mark.parametrize("text", [HTTP_2004, GRPC_2004], ids=["http", "grpc"])
def test_error_codes_are_read_from_both_transports(text: str) -> None:
    assert error_code(TransportError(text)) == 2004


def test_no_code_in_an_auth_refusal() -> None:
    text = "PullMessages failed: HTTP 401 from POST /v1/fleet/pull-messages: " + (
        '\'{"detail":"Invalid SuperNode authentication"}\''
    )
    assert error_code(AuthenticationError(text)) is None
    assert LINE.node_lost(AuthenticationError(text))
    assert LINE.node_lost(AuthenticationError("Ping failed: UNAUTHENTICATED: Invalid node ID"))
    assert not LINE.node_lost(TransportError("HTTP 400 {}"))


@pytest.mark.parametrize("text", [HTTP_2004, GRPC_2004], ids=["http", "grpc"])
def test_activation_refused_is_an_authentication_error_that_says_why(text: str) -> None:
    clearer = LINE.refusal("activate", TransportError(text))
    assert isinstance(clearer, AuthenticationError)
    assert "flwr supernode register" in str(clearer)
    assert "still online" in str(clearer)


def test_registration_refusals() -> None:
    disabled = TransportError('RegisterNode failed: HTTP 412 ...: \'{"code":2001,"detail":"x"}\'')
    assert "--enable-supernode-auth" in str(LINE.refusal("register", disabled))
    in_use = TransportError('RegisterNode failed: FAILED_PRECONDITION: {"code": 23}')
    assert isinstance(LINE.refusal("register", in_use), AuthenticationError)
    assert LINE.refusal("register", TransportError("HTTP 500 boom")) is None


def test_run_not_running_is_code_2007() -> None:
    http = AuthenticationError('PushObject failed: HTTP 403 ...: \'{"code":2007,"detail":"x"}\'')
    grpc = AuthenticationError('PushMessages failed: PERMISSION_DENIED: {"code": 2007}')
    assert LINE.run_ended(http) and LINE.run_ended(grpc)
    assert not LINE.run_ended(AuthenticationError('GetRun failed: HTTP 403 {"code":2008}'))


# ------------------------------------------------------------------------ pull


def test_a_pulled_instruction_is_fetched_checked_and_confirmed() -> None:
    response, objects = instruction()
    incoming = LINE.instruction_from_pull(response, NODE)
    assert isinstance(incoming, Incoming)
    first = incoming.wanted()
    assert {r.object_id for r in first} == set(objects)
    assert all(r.run_id == RUN and r.node == NODE_REF for r in first)
    message = fetch(incoming, objects)
    assert message is not None
    assert message.metadata.message_id == response.messages_list[0].metadata.message_id
    assert message.metadata.dst_node_id == NODE
    params = message.content.parameters_records["fitins.parameters"]["0"]
    assert np.array_equal(params.numpy(), np.arange(6, dtype=np.float32))
    assert message.content.configs_records["fitins.config"]["tag"] == "x"
    confirm = incoming.confirm_request()
    assert confirm == pb.ConfirmMessageReceivedRequest(
        node=NODE_REF, run_id=RUN, message_object_id=message.metadata.message_id
    )


def test_an_object_not_available_yet_is_asked_for_again() -> None:
    response, objects = instruction()
    incoming = LINE.instruction_from_pull(response, NODE)
    assert isinstance(incoming, Incoming)
    request = incoming.wanted()[0]
    not_yet = pb.PullObjectResponse(object_found=True, object_available=False)
    assert incoming.take(request, not_yet) is False
    assert request.object_id in {r.object_id for r in incoming.wanted()}
    assert fetch(incoming, objects) is not None


def test_a_tampered_object_is_refused_and_nothing_is_handed_on() -> None:
    response, objects = instruction()
    incoming = LINE.instruction_from_pull(response, NODE)
    assert isinstance(incoming, Incoming)
    victim = max(objects, key=lambda i: len(objects[i]))  # the array chunk
    tampered = bytearray(objects[victim])
    tampered[-1] ^= 0x01
    request = next(r for r in incoming.wanted() if r.object_id == victim)
    answer = pb.PullObjectResponse(
        object_found=True, object_available=True, object_content=bytes(tampered)
    )
    with pytest.raises(ObjectIntegrityError):
        incoming.take(request, answer)


def test_an_object_the_superlink_does_not_know_is_malformed() -> None:
    response, _ = instruction()
    incoming = LINE.instruction_from_pull(response, NODE)
    assert isinstance(incoming, Incoming)
    request = incoming.wanted()[0]
    with pytest.raises(MalformedMessageError, match="does not know object"):
        incoming.take(request, pb.PullObjectResponse(object_found=False))


def test_an_instruction_for_another_node_is_dropped() -> None:
    response, _ = instruction(dst=NODE + 1)
    before = LINE.dropped["not for this node"]
    assert LINE.instruction_from_pull(response, NODE) is None
    assert LINE.dropped["not for this node"] == before + 1


def test_no_message_no_work() -> None:
    assert LINE.instruction_from_pull(pb.PullMessagesResponse(), NODE) is None


def test_a_message_without_its_tree_is_malformed() -> None:
    response, _ = instruction()
    response.message_object_trees = []
    with pytest.raises(MalformedMessageError, match="object tree"):
        LINE.instruction_from_pull(response, NODE)


# ------------------------------------------------------------------------ push


def pulled_message() -> Message:
    response, objects = instruction()
    incoming = LINE.instruction_from_pull(response, NODE)
    assert isinstance(incoming, Incoming)
    message = fetch(incoming, objects)
    assert message is not None
    return message


def test_the_reply_is_pushed_with_its_tree_and_swapped_task_ids() -> None:
    message = pulled_message()
    reply = reply_to(message)
    outgoing = LINE.push_request(NODE_REF, message, reply)
    assert isinstance(outgoing, Outgoing)
    push = outgoing.request
    assert isinstance(push, pb.PushMessagesRequest)
    assert push.node == NODE_REF
    (wire,) = push.messages_list
    (tree,) = push.message_object_trees
    md = wire.metadata
    assert md.message_id == tree.object_id
    assert md.reply_to_message_id == message.metadata.message_id
    assert (md.src_node_id, md.dst_node_id) == (NODE, SERVER_NODE_ID)
    # The legacy ServerApp's instruction has src_task_id 1: the reply's dst_task_id.
    assert md.dst_task_id == 1 and md.src_task_id is None
    assert wire.content == pb.RecordDict() and wire.error is None
    assert md.ttl <= message.metadata.created_at + message.metadata.ttl - md.created_at + 1e-6
    assert len(push.clientapp_runtime_list) == 1 and push.clientapp_runtime_list[0] >= 0


def test_exactly_the_objects_asked_for_are_uploaded_with_the_session() -> None:
    message = pulled_message()
    outgoing = LINE.push_request(NODE_REF, message, reply_to(message))
    assert isinstance(outgoing, Outgoing)
    tree = outgoing.request.message_object_trees[0]
    asked = [tree.children[0].object_id, tree.object_id]
    uploads = list(
        outgoing.uploads(pb.PushMessagesResponse(objects_to_push=asked, session_id="s-1"))
    )
    assert [u.object_id for u in uploads] == asked
    assert all(u.session_id == "s-1" and u.run_id == RUN and u.node == NODE_REF for u in uploads)
    assert list(outgoing.uploads(pb.PushMessagesResponse(session_id="s-1"))) == []
    with pytest.raises(MalformedMessageError, match="does not have"):
        outgoing.uploads(pb.PushMessagesResponse(objects_to_push=["0" * 64]))
    assert outgoing.stored(pb.PushObjectResponse(stored=True))
    assert not outgoing.stored(pb.PushObjectResponse(stored=False))


def test_an_error_reply_is_one_message_object() -> None:
    message = pulled_message()
    outgoing = LINE.push_request(NODE_REF, message, reply_to(message, error=True))
    assert isinstance(outgoing, Outgoing)
    (wire,) = outgoing.request.messages_list
    assert wire.error == pb.Error(code=2, reason="boom") and wire.content is None
    assert outgoing.request.message_object_trees[0].children == []


def test_an_expired_reply_is_not_sent() -> None:
    response, objects = instruction(created_at=time.time() - 7200)
    incoming = LINE.instruction_from_pull(response, NODE)
    assert isinstance(incoming, Incoming)
    message = fetch(incoming, objects)
    assert message is not None
    assert LINE.push_request(NODE_REF, message, reply_to(message)) is None


# ------------------------------------------------------------------------ auth


def test_http_headers_are_the_grpc_metadata_in_base64() -> None:
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    auth = SignedCallAuth(None)
    rpc = LINE.rpcs.pull
    request = LINE.pull_request(NODE_REF)
    metadata = auth.call_metadata(rpc, request)
    assert set(metadata) == {"flwr-public-key-bin", "flwr-timestamp", "flwr-signature-bin"}
    headers = auth.http_headers(rpc, request)
    assert set(headers) == {"flwr-public-key", "flwr-timestamp", "flwr-signature"}
    pem = base64.b64decode(headers["flwr-public-key"], validate=True)
    assert pem == auth.public_key_pem and pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    key = load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    signature = base64.b64decode(headers["flwr-signature"], validate=True)
    stamp = headers["flwr-timestamp"]
    assert stamp.endswith("+00:00")
    key.verify(signature, stamp.encode("ascii"), ec.ECDSA(hashes.SHA256()))  # raises if bad
    assert not auth.user_keys
