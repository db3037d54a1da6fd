"""Which node an operator-registered key was last activated as, across processes.

A SuperLink that binds a key to one node (Flower 1.42: ``flwr supernode register``)
refuses to activate that key again while its node is still online — for up to two
heartbeat intervals after a process that used it died without deactivating. The refusal
looks exactly like the one for a key nobody registered, and the new process does not know
its node id. So a session that activates with the user's keys records the node id here
(one small file per key, named by the SHA-256 of the public key), and removes it when the
node was deactivated cleanly. A record found after such a refusal means: a process
crashed; deactivate that node (allowed while it is online) and activate again.

The directory is ``$FLWR_SDK_STATE_DIR`` or ``$XDG_STATE_HOME/flwr-sdk/nodes``
(``~/.local/state/flwr-sdk/nodes``). Nothing secret is stored (a node id per key hash);
failures to read or write are logged at DEBUG and otherwise ignored.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["ENV_STATE_DIR", "NodeRecords"]

log = logging.getLogger("flwr_sdk")

ENV_STATE_DIR = "FLWR_SDK_STATE_DIR"
"""Environment variable that overrides where node records are kept."""


def _default_dir() -> Path:
    explicit = os.environ.get(ENV_STATE_DIR)
    if explicit:
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "flwr-sdk" / "nodes"


class NodeRecords:
    """Node ids by key id (hex SHA-256 of a public key), one JSON file each."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory

    @property
    def directory(self) -> Path:
        """Where the records live (resolved when first used)."""
        if self._directory is None:
            self._directory = _default_dir()
        return self._directory

    def _path(self, key_id: str) -> Path:
        return self.directory / f"{key_id}.json"

    def get(self, key_id: str) -> int | None:
        """The node id recorded for ``key_id``, or None."""
        try:
            data = json.loads(self._path(key_id).read_text())
            node_id = data.get("node_id") if isinstance(data, dict) else None
        except (OSError, ValueError) as exc:
            log.debug("No node record for key %s: %s", key_id[:12], exc)
            return None
        return node_id if isinstance(node_id, int) and node_id > 0 else None

    def put(self, key_id: str, node_id: int) -> None:
        """Record that ``key_id`` is active as ``node_id``."""
        path = self._path(key_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"node_id": node_id}))
            temporary.replace(path)
        except OSError as exc:
            log.debug("Could not record node %d for key %s: %s", node_id, key_id[:12], exc)

    def drop(self, key_id: str) -> None:
        """Forget ``key_id``'s node (it was deactivated cleanly)."""
        try:
            self._path(key_id).unlink(missing_ok=True)
        except OSError as exc:
            log.debug("Could not remove the node record of key %s: %s", key_id[:12], exc)
