"""Content-addressed objects of the Fleet API, by run, held by the messages that use them.

Flower 1.42 moves a message's content as objects whose id is the SHA-256 hex of their
bytes. The store keeps them per run; each message that needs an object *holds* it (an
instruction until the node confirms receipt, a reply until it reached the driver), and
an object nobody holds any more is dropped. Identical objects of several messages (the
same model sent to every node, the same status record in every reply) are stored once.

An object is either *available* (its bytes are here) or *pending* (a held id whose bytes
have not been pushed yet). :meth:`ObjectStore.put` accepts bytes only for a pending id
and only when they hash to it; the server's own objects (encoded instructions) are
stored with :meth:`ObjectStore.put_trusted`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr_sdk.wire.v1_42_objects import object_id_of

__all__ = ["ObjectStore"]


@dataclass
class _Entry:
    content: bytes | None = None
    holders: int = 0


@dataclass
class _Run:
    objects: dict[str, _Entry] = field(default_factory=dict)
    held: dict[str, list[str]] = field(default_factory=dict)


class ObjectStore:
    """Objects by id per run, reference-counted by holder (a message id)."""

    def __init__(self) -> None:
        self._runs: dict[int, _Run] = {}

    def hold(self, run_id: int, holder: str, object_ids: Iterable[str]) -> list[str]:
        """Let ``holder`` hold ``object_ids`` (unknown ids become pending).

        Returns the ids that are not available yet (in order, each once): what must be
        pushed. A holder that already holds objects keeps them and holds nothing more.
        """
        run = self._runs.setdefault(run_id, _Run())
        if holder in run.held:
            return []
        ids = list(dict.fromkeys(object_ids))
        run.held[holder] = ids
        missing = []
        for object_id in ids:
            entry = run.objects.setdefault(object_id, _Entry())
            entry.holders += 1
            if entry.content is None:
                missing.append(object_id)
        return missing

    def release(self, run_id: int, holder: str) -> None:
        """``holder`` no longer needs its objects; drop those nobody else holds."""
        run = self._runs.get(run_id)
        if run is None:
            return
        for object_id in run.held.pop(holder, ()):
            entry = run.objects[object_id]
            entry.holders -= 1
            if entry.holders <= 0:
                del run.objects[object_id]
        if not run.held:
            del self._runs[run_id]

    def holds(self, run_id: int, holder: str) -> bool:
        """Whether ``holder`` holds objects in the run."""
        run = self._runs.get(run_id)
        return run is not None and holder in run.held

    def put(self, run_id: int, object_id: str, content: bytes) -> bool:
        """Store the bytes of a pending object; False if not pending or not its hash."""
        entry = self._pending(run_id, object_id)
        if entry is None or object_id_of(content) != object_id:
            return False
        entry.content = content
        return True

    def put_trusted(self, run_id: int, object_id: str, content: bytes) -> None:
        """Store the bytes of a held object the server encoded itself (no re-hash)."""
        entry = self._pending(run_id, object_id)
        if entry is not None:
            entry.content = content

    def is_pending(self, run_id: int, object_id: str) -> bool:
        """Whether the id is held but its bytes have not arrived."""
        return self._pending(run_id, object_id) is not None

    def found(self, run_id: int, object_id: str) -> bool:
        """Whether the id is held in the run (pending or available)."""
        run = self._runs.get(run_id)
        return run is not None and object_id in run.objects

    def get(self, run_id: int, object_id: str) -> bytes | None:
        """The bytes of an available object, else None."""
        run = self._runs.get(run_id)
        entry = None if run is None else run.objects.get(object_id)
        return None if entry is None else entry.content

    def __len__(self) -> int:
        """How many objects (pending or available) are held over all runs."""
        return sum(len(run.objects) for run in self._runs.values())

    def _pending(self, run_id: int, object_id: str) -> _Entry | None:
        run = self._runs.get(run_id)
        entry = None if run is None else run.objects.get(object_id)
        return entry if entry is not None and entry.content is None else None
