"""``flwr-sdk client --node-config`` reads the string flower-supernode takes."""

from __future__ import annotations

import pytest

from flwr_sdk.cli_inputs import parse_node_config


def test_pairs_with_toml_values() -> None:
    text = "partition-id=0 num-partitions=2 name=\"silo a\" lr=0.5 shuffle=true tag='x y'"
    assert parse_node_config(text) == {
        "partition-id": 0,
        "num-partitions": 2,
        "name": "silo a",
        "lr": 0.5,
        "shuffle": True,
        "tag": "x y",
    }


def test_quoted_number_stays_a_string() -> None:
    assert parse_node_config('zip="01234"') == {"zip": "01234"}


def test_empty_is_empty() -> None:
    assert parse_node_config(None) == {}
    assert parse_node_config("") == {}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("partition-id", "KEY=VALUE"),
        ("a=1 junk", "KEY=VALUE"),
        ("name=silo", 'name="silo"'),
        ("xs=[1,2]", "only bool, number and string"),
    ],
)
def test_bad_pairs_are_refused(text: str, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_node_config(text)
    assert needle in str(info.value)
