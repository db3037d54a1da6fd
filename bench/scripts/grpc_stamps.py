"""Time stamps at a Flower server's gRPC boundary (imported by the bench's server scripts).

Runs INSIDE the isolated Flower virtualenv (flwr 1.12.0 or 1.15.2), before the server
starts. :func:`install`
wraps the request deserializer and response serializer of every gRPC method the server
registers afterwards (``grpc.unary_unary_rpc_method_handler`` and
``grpc.stream_stream_rpc_method_handler`` are what Flower's generated ``*_pb2_grpc``
modules call), so each message records:

* ``send``: ``t0`` when grpcio starts serializing a response, ``t1`` when the bytes are
  ready and handed to gRPC core for sending;
* ``recv``: ``t0`` when gRPC core hands over a completely received request (before
  parsing), ``t1`` when it is parsed.

Between an instruction's ``send.t1`` and the reply's ``recv.t0`` lies exactly the client's
side of a round: the instruction on the wire, the client's decoding, ``fit``, encoding and
the reply on the wire. What the server's application does before serializing (Flower's own
protobuf copies) or after parsing is outside, and the same for every client anyway.

Stamps are ``time.perf_counter()`` (``CLOCK_MONOTONIC``). Each stamped message is kept in
:data:`LAST` by direction and, with a stamp file, appended to it as one JSON line with the
message's Flower ids under the same keys for both Fleet lines: ``task_ids`` are the ids of
the instructions a response delivers (1.12 PullTaskIns: task ids; 1.15 PullMessages:
message ids), ``ancestry`` the instructions a request answers (1.12 PushTaskRes: the
tasks' ancestry; 1.15 PushMessages: ``reply_to_message``). Only messages of at least
:data:`MIN_BYTES` are recorded, so idle polling leaves no trace.

Flower 1.15's SuperLink authenticates every Fleet call with a server interceptor that
builds a new method handler per call from the registered one's (already stamped)
serializers; those are not wrapped twice, so every message is stamped exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

MIN_BYTES = 512
#: The last stamped message per direction ("send", "recv").
LAST: dict[str, dict[str, Any]] = {}
_lock = threading.Lock()
#: Deserialize start of the latest request per (method, node id), any size.
_requests: dict[tuple[str, int], float] = {}


def _node_id(message: Any) -> int | None:
    """The node a request comes from or a response goes to, if the message says."""
    name = message.DESCRIPTOR.name
    if name in ("PullTaskInsRequest", "PullMessagesRequest"):
        return int(message.node.node_id)
    if name == "PullTaskInsResponse" and message.task_ins_list:
        return int(message.task_ins_list[0].task.consumer.node_id)
    if name == "PullMessagesResponse" and message.messages_list:
        return int(message.messages_list[0].metadata.dst_node_id)
    return None


def _ids(message: Any) -> dict[str, Any]:
    """Flower ids that tie a Fleet message to its round (empty for other messages)."""
    name = message.DESCRIPTOR.name
    if name == "PullTaskInsResponse":
        return {"task_ids": [t.task_id for t in message.task_ins_list]}
    if name == "PushTaskResRequest":
        return {"ancestry": [a for t in message.task_res_list for a in t.task.ancestry]}
    # Flower 1.15's Fleet API (the ServerAppIo API's messages have other type names).
    if name == "PullMessagesResponse":
        return {"task_ids": [m.metadata.message_id for m in message.messages_list]}
    if name == "PushMessagesRequest":
        return {"ancestry": [m.metadata.reply_to_message for m in message.messages_list]}
    if name in ("ServerMessage", "ClientMessage"):
        return {"field": message.WhichOneof("msg")}
    return {}


def install(stamp_file: Path | None = None) -> None:
    """Wrap the (de)serializers of every gRPC method handler created from now on."""

    def record(
        direction: str, method: str, message: Any, data: bytes, t0: float, t1: float
    ) -> None:
        node = _node_id(message)
        if direction == "recv" and node is not None:
            _requests[(method, node)] = t0
        if len(data) < MIN_BYTES:
            return
        event = {"dir": direction, "method": method, "bytes": len(data), "t0": t0, "t1": t1}
        if direction == "send":
            # Deserialize start of the request this response answers.
            event["request_t0"] = None if node is None else _requests.get((method, node))
        event |= _ids(message)
        with _lock:
            LAST[direction] = event
            if stamp_file is not None:
                with stamp_file.open("a") as out:
                    out.write(json.dumps(event) + "\n")

    def wrap(direction: str, method: str, convert: Callable[[Any], Any]) -> Any:
        """``convert`` is a request parser ("recv") or a response serializer ("send")."""
        if getattr(convert, "_bench_stamped", False):
            return convert  # re-wrapped by an interceptor (Flower 1.15's node auth)

        def stamped(arg: Any) -> Any:
            t0 = time.perf_counter()
            out = convert(arg)
            t1 = time.perf_counter()
            message, data = (out, arg) if direction == "recv" else (arg, out)
            record(direction, method, message, data, t0, t1)
            return out

        stamped._bench_stamped = True  # type: ignore[attr-defined]
        return stamped

    def wrap_factory(factory: Callable[..., Any]) -> Callable[..., Any]:
        def make(
            behavior: Any, request_deserializer: Any = None, response_serializer: Any = None
        ) -> Any:
            method = getattr(behavior, "__name__", "?")
            if request_deserializer is not None:
                request_deserializer = wrap("recv", method, request_deserializer)
            if response_serializer is not None:
                response_serializer = wrap("send", method, response_serializer)
            return factory(behavior, request_deserializer, response_serializer)

        return make

    grpc.unary_unary_rpc_method_handler = wrap_factory(grpc.unary_unary_rpc_method_handler)
    grpc.stream_stream_rpc_method_handler = wrap_factory(grpc.stream_stream_rpc_method_handler)
