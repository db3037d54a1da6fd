"""The e2e scenario, shared by the plain-flwr ServerApp and the reference-server test.

Builds demo.v1 requests (examples/extending/proto/demo/v1/demo.proto) with RecordSet
APIs only, following docs/extending.md, and checks every field of each reply. ``api``
is a namespace with ``ConfigsRecord``, ``MetricsRecord``, ``ParametersRecord``,
``RecordSet`` and ``array_from_numpy`` (plain flwr's, or flwr-sdk's), and replies are
Message objects of either library (``has_content()``, ``content``, ``error.reason``).
Imports numpy only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SQUARE = "demo.v1.SquareRequest"
STATS = "demo.v1.StatsRequest"


@dataclass
class Case:
    name: str
    message_type: str
    content: Any
    check: Callable[[Any, int], None]


def _stats_data() -> np.ndarray:
    return np.array([[1, 2], [3, 6]], dtype=np.int32)


def _square_content(api: Any, values: list[int], scale: Any) -> Any:
    content = api.RecordSet()
    content.configs_records[SQUARE] = api.ConfigsRecord({"values": values, "scale": scale})
    return content


def _stats_content(api: Any, with_label: bool = True) -> Any:
    fields: dict[str, Any] = {"data": True, "statistic": 2, "salt": b"pepper"}
    if with_label:
        fields["label"] = "temps"
    content = api.RecordSet()
    content.configs_records[STATS] = api.ConfigsRecord(fields)
    content.parameters_records[STATS] = api.ParametersRecord(
        {"data": api.array_from_numpy(_stats_data())}
    )
    return content


def _check_square(values: list[int], scale: float) -> Callable[[Any, int], None]:
    def check(reply: Any, node_id: int) -> None:
        assert reply.has_content(), f"error reply: {reply.error.reason}"
        content = reply.content
        assert list(content.configs_records) == ["demo.v1.SquareReply"], content
        assert not content.parameters_records and not content.metrics_records, content
        squares = [v * v for v in values]
        assert dict(content.configs_records["demo.v1.SquareReply"]) == {
            "squares": squares,
            "scaled_sum": scale * sum(squares),
            "node_id": node_id,
        }, content

    return check


def _check_stats(reply: Any, node_id: int) -> None:
    assert reply.has_content(), f"error reply: {reply.error.reason}"
    content = reply.content
    name = "demo.v1.StatsReply"
    assert list(content.configs_records) == [name], content
    assert list(content.parameters_records) == [name], content
    assert not content.metrics_records, content
    data = _stats_data().astype(np.float64)
    assert dict(content.configs_records[name]) == {
        "summary": True,
        "summary.value": 6.0,
        "summary.shape": [2, 2],
        "centered": True,
        "label": "TEMPS",
        "digest": hashlib.sha256(b"pepper" + data.tobytes()).digest(),
        "statistic": 2,
        "notes": [f"node {node_id}", "4 values"],
    }, content
    arrays = content.parameters_records[name]
    assert list(arrays) == ["centered"], arrays
    centered = arrays["centered"]
    assert centered.stype == "numpy.ndarray" and centered.dtype == "float64", centered
    assert list(centered.shape) == [2, 2], centered
    np.testing.assert_array_equal(centered.numpy(), data - data.mean())


def _check_error(*fragments: str) -> Callable[[Any, int], None]:
    def check(reply: Any, node_id: int) -> None:
        assert not reply.has_content(), f"expected an error reply, got {reply.content}"
        assert reply.error.code == 2, reply.error
        for fragment in fragments:
            assert fragment in reply.error.reason, (fragment, reply.error.reason)

    return check


def cases(api: Any) -> list[Case]:
    """Every request of the scenario, in the order it is sent."""
    wrong_kind = api.RecordSet()
    wrong_kind.metrics_records[SQUARE] = api.MetricsRecord({"values": [1], "scale": 1.0})
    return [
        Case(
            "square", SQUARE, _square_content(api, [3, -4, 5], 0.5), _check_square([3, -4, 5], 0.5)
        ),
        Case("stats", STATS, _stats_content(api), _check_stats),
        Case(
            "missing-field",
            STATS,
            _stats_content(api, with_label=False),
            _check_error("RecordSetDecodeError", "field 'label'", "missing key 'label'"),
        ),
        Case(
            "wrong-value-type",
            SQUARE,
            _square_content(api, [1], "0.5"),
            _check_error("field 'scale'", "expected float (double), got str"),
        ),
        Case(
            "wrong-record-kind",
            SQUARE,
            wrong_kind,
            _check_error("field 'values'", "is a MetricsRecord, expected a ConfigsRecord"),
        ),
        Case(
            "unknown-type",
            "demo.v1.NoSuchRequest",
            _square_content(api, [1], 1.0),
            _check_error("'demo.v1.NoSuchRequest' has no handler", SQUARE, STATS),
        ),
        Case("square-again", SQUARE, _square_content(api, [7], 2.0), _check_square([7], 2.0)),
    ]
