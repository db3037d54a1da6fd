"""A request encoded once (:func:`pre_encode`) goes out as exactly its normal bytes."""

from __future__ import annotations

import betterproto2
import pytest

from flwr_sdk.net.fast_codec import (
    FastProtoCodec,
    encode_message,
    encode_message_chunks,
    pre_encode,
)
from flwr_sdk.wire.lines import all_lines


def _session_requests() -> list[betterproto2.Message]:
    """Every line's heartbeat and poll requests, as a session builds them."""
    requests: list[betterproto2.Message] = []
    for line in all_lines():
        node = line.proto.Node(node_id=7_003_002_001)
        requests.append(line.heartbeat_request(node, 45.0))
        requests.append(line.pull_request(node))
    return requests


@pytest.mark.parametrize("request_", _session_requests(), ids=lambda r: type(r).__name__)
def test_kept_bytes_are_the_normal_encoding(request_: betterproto2.Message) -> None:
    normal = bytes(encode_message(request_))
    assert normal == bytes(request_)
    kept = pre_encode(request_)
    assert kept is request_
    once = encode_message(request_)
    assert once == normal
    assert encode_message(request_) is once  # not encoded again
    assert bytes(encode_message_chunks(request_)) == normal
    for chunked in (False, True):
        assert bytes(FastProtoCodec(chunked=chunked).encode(request_, type(request_))) == normal
    assert bytes(encode_message_chunks(request_, deterministic=True)) == normal
