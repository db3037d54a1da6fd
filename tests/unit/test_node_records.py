"""Node records: which node an operator key was last activated as (across processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flwr_sdk.transport.node_records import ENV_STATE_DIR, NodeRecords


def test_put_get_drop(tmp_path: Path) -> None:
    records = NodeRecords(tmp_path / "nodes")
    assert records.get("ab" * 32) is None
    records.put("ab" * 32, 2**64 - 5)
    assert records.get("ab" * 32) == 2**64 - 5
    assert NodeRecords(tmp_path / "nodes").get("ab" * 32) == 2**64 - 5  # another process
    records.drop("ab" * 32)
    assert records.get("ab" * 32) is None
    records.drop("ab" * 32)  # dropping twice is fine


def test_unreadable_or_unwritable_records_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "cd.json").write_text("not json")
    assert NodeRecords(tmp_path).get("cd") is None
    (tmp_path / "ef.json").write_text('{"node_id": "7"}')
    assert NodeRecords(tmp_path).get("ef") is None
    blocked = tmp_path / "file"
    blocked.write_text("")
    NodeRecords(blocked / "nodes").put("ab", 3)  # a file where the directory should be
    assert NodeRecords(blocked / "nodes").get("ab") is None


def test_the_directory_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path / "x"))
    assert NodeRecords().directory == tmp_path / "x"
    monkeypatch.delenv(ENV_STATE_DIR)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert NodeRecords().directory == tmp_path / "state" / "flwr-sdk" / "nodes"
