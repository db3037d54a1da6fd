"""Node authentication (Flower 1.12 scheme) against the fixed-key vector in the facts."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from flwr_sdk_proto.v1_12.flwr import proto as pb

from flwr_sdk.wire import v1_12_auth as auth

CLIENT_SCALAR = int("1c1e7a1c1e7a1c1e7a1c1e7a1c1e7a1c1e7a1c1e7a1c1e7a", 16)
SERVER_SCALAR = int("5e7e2b5e7e2b5e7e2b5e7e2b5e7e2b5e7e2b5e7e2b5e7e2b", 16)
CLIENT_HEADER = (
    "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUhZd0VBWUhLb1pJemowQ0FRWUZLNEVFQUNJRFlnQUVTSW92eHBie"
    "EloYldsSWp0aTVDaHVUWmt0ZEJXWCszKwpHOTUvL1dySERqTmRieldoamkrZEtMUXY3M1RHWnRucjNKVGYvRDBZQ2"
    "tYSnBjSUR1MlZGYkFIRkpBRGZ6LzRaClNiWEt3ZC80WDhPUkpCS2xZVXA4ZTlUZ3VucFgwUW9kCi0tLS0tRU5EIFB"
    "VQkxJQyBLRVktLS0tLQo="
)
SERVER_HEADER = (
    "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0KTUhZd0VBWUhLb1pJemowQ0FRWUZLNEVFQUNJRFlnQUVJTlp0NFJRT"
    "lA0RHBhUW01THpZYVBOT1FaVEJXQlJiQgpvR0M0WUl4V3hWTDVQTVNFanBkNTB2TVRST3puT1VuR0ZLYXFFbThEQ1"
    "ZOZytoUzFmQUQyMGE4MTNrbWpqNnVyCjhzYndVNlJkTDZxc1pjbm5IVmtxRmtqOWFDUzZIYWk4Ci0tLS0tRU5EIFB"
    "VQkxJQyBLRVktLS0tLQo="
)
HMAC_KEY = b"E4FJl9Oo_Yhhzxv0fd91GxZZw6pprBs6RS0TKYTK0_8="
NODE_ID = 0xF00DFACE12345678


def _keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    curve = ec.SECP384R1()
    return ec.derive_private_key(CLIENT_SCALAR, curve), ec.derive_private_key(SERVER_SCALAR, curve)


def test_public_key_headers() -> None:
    client, server = _keys()
    assert auth.public_key_to_header(client.public_key()) == CLIENT_HEADER
    assert auth.public_key_to_header(server.public_key()) == SERVER_HEADER
    loaded = auth.public_key_from_header(SERVER_HEADER)
    assert loaded.public_numbers() == server.public_key().public_numbers()


def test_shared_key_is_the_same_on_both_sides() -> None:
    client, server = _keys()
    assert auth.shared_hmac_key(client, server.public_key()) == HMAC_KEY
    assert auth.shared_hmac_key(server, client.public_key()) == HMAC_KEY


def test_tokens_match_vector() -> None:
    node = pb.Node(node_id=NODE_ID)
    pull = pb.PullTaskInsRequest(node=node)
    ping = pb.PingRequest(node=node, ping_interval=30.0)
    get_run = pb.GetRunRequest(node=node, run_id=2**63 + 0x123)
    assert auth.deterministic_bytes(pull).hex() == "0a0b08f8acd191e1d9fe86f001"
    assert auth.deterministic_bytes(ping).hex() == "0a0b08f8acd191e1d9fe86f001110000000000003e40"
    assert auth.auth_token(HMAC_KEY, pull) == "KVbMzr1mwNJvo-9w94D1imwdz2w1FJCCPJQ-DWWFknQ="
    assert auth.auth_token(HMAC_KEY, ping) == "pr6RJhhaagemAQRiVMZiDWFqAOGHPABWW54j0ACaIs8="
    assert auth.auth_token(HMAC_KEY, get_run) == "fTnWdVrYaIt05P_jwHwG_xcWqg3Jkr3uykQW3DymXuk="
    assert auth.verify_token(HMAC_KEY, get_run, "fTnWdVrYaIt05P_jwHwG_xcWqg3Jkr3uykQW3DymXuk=")
    assert not auth.verify_token(HMAC_KEY, pull, "fTnWdVrYaIt05P_jwHwG_xcWqg3Jkr3uykQW3DymXuk=")


def test_deterministic_bytes_sort_maps_at_every_level() -> None:
    a = pb.ConfigsRecord(
        data={"b": pb.ConfigsRecordValue(sint64=1), "a": pb.ConfigsRecordValue(bool=True)}
    )
    b = pb.ConfigsRecord(
        data={"a": pb.ConfigsRecordValue(bool=True), "b": pb.ConfigsRecordValue(sint64=1)}
    )
    assert bytes(a) != bytes(b)
    rs_a = pb.RecordSet(configs={"z": a, "y": b})
    rs_b = pb.RecordSet(configs={"y": b, "z": a})
    assert auth.deterministic_bytes(rs_a) == auth.deterministic_bytes(rs_b)
    assert auth.deterministic_bytes(b) == bytes(b)


def test_deterministic_map_order_is_upb_order() -> None:
    """Flower's protobuf (upb) orders map keys so that a prefix sorts after its
    extensions; the SuperLink recomputes the HMAC over exactly that order."""
    keys = ["a", "ab", "", "b", "abc", "aa"]
    record = pb.ConfigsRecord(data={k: pb.ConfigsRecordValue(sint64=1) for k in keys})
    data = auth.deterministic_bytes(record)
    order = []
    i = 0
    while i < len(data):
        length = data[i + 1]
        entry = data[i + 2 : i + 2 + length]
        order.append(entry[2 : 2 + entry[1]].decode())
        i += 2 + length
    # Observed from protobuf 4.25 (upb) in flwr 1.12.0's environment.
    assert order == ["aa", "abc", "ab", "a", "b", ""]
