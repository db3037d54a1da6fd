"""A ServerApp that runs fit rounds with a real timeout and records them (fault suite).

Runs INSIDE a flwr 1.12.0 virtualenv, started by ``flower-server-app``. It uses the
low-level ``@app.main()`` API: every round pushes a ``train`` message (legacy ``FitIns``
content, config ``round``) to each node the SuperLink lists and pulls replies every
0.2 s until all came or the round timeout passed, so a round whose instruction or reply
was lost in transit ends after the timeout; the report is rewritten as each reply comes
(a round counts as served from its first result on). (The legacy ``ServerApp(server_fn=...)``
of 1.12 waits without end for a reply to a TaskIns that expired unpulled or whose pull
answer was lost: its round timeout is only the messages' TTL.)

Environment: ``CHAOS_REPORT`` (JSON report path, rewritten after every round),
``CHAOS_ROUNDS`` (default 1000), ``CHAOS_ROUND_TIMEOUT`` (seconds; default 10). The
report::

    {"fit": {"1": {"results": 1, "failures": 0, "at": <time.time()>, "nodes": [...],
                   "seen": [<round each node reported>]}}}
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from flwr.common import Context, FitIns, MessageType, ndarrays_to_parameters
from flwr.common.recordset_compat import fitins_to_recordset, recordset_to_fitres
from flwr.server import Driver, ServerApp

INITIAL = [np.zeros(3, dtype=np.float32), np.arange(4, dtype=np.float64).reshape(2, 2)]

app = ServerApp()


@app.main()
def main(driver: Driver, context: Context) -> None:
    path = Path(os.environ["CHAOS_REPORT"])
    rounds = int(os.environ.get("CHAOS_ROUNDS", "1000"))
    timeout = float(os.environ.get("CHAOS_ROUND_TIMEOUT", "10"))
    report: dict = {"fit": {}}

    def flush() -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report))
        tmp.replace(path)

    def record(rnd: int, replies: list, sent: int) -> None:
        good = [r for r in replies if not r.has_error()]
        results = [recordset_to_fitres(r.content, keep_input=False) for r in good]
        report["fit"][str(rnd)] = {
            "results": len(good),
            "failures": sent - len(good),
            "at": time.time(),
            "nodes": sorted(str(r.metadata.src_node_id) for r in good),
            "seen": [int(res.metrics.get("seen", -1)) for res in results],
        }
        flush()

    flush()
    parameters = ndarrays_to_parameters(INITIAL)
    for rnd in range(1, rounds + 1):
        nodes = driver.get_node_ids()
        while not nodes:
            time.sleep(0.5)
            nodes = driver.get_node_ids()
        config = {"round": rnd, "lr": 0.5, "tag": "fit"}
        messages = [
            driver.create_message(
                content=fitins_to_recordset(FitIns(parameters, config), keep_input=True),
                message_type=MessageType.TRAIN,
                dst_node_id=node,
                group_id=str(rnd),
                ttl=timeout,
            )
            for node in nodes
        ]
        ids = [i for i in driver.push_messages(messages) if i]
        replies: dict[str, object] = {}
        deadline = time.time() + timeout
        while len(replies) < len(ids) and time.time() < deadline:
            try:
                pulled = driver.pull_messages([i for i in ids if i not in replies])
            except Exception as exc:
                # 1.12 SuperLink: KeyError on a TaskIns that expired while its reply was
                # pulled; the round ends here.
                report.setdefault("pull_errors", []).append(f"round {rnd}: {exc!r}")
                break
            fresh = False
            for reply in pulled:
                if reply.metadata.reply_to_message not in replies:
                    replies[reply.metadata.reply_to_message] = reply
                    fresh = True
            if fresh:
                record(rnd, list(replies.values()), len(nodes))
            time.sleep(0.2)
        record(rnd, list(replies.values()), len(nodes))
        good = [r for r in replies.values() if not r.has_error()]
        if good:
            parameters = recordset_to_fitres(good[0].content, keep_input=False).parameters
