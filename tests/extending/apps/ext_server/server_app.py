"""Plain flwr 1.12 ServerApp (Driver API): runs ext_scenario against every node.

Writes a JSON report to ``$EXT_REPORT``: ``{"nodes": [...], "cases": {name: "ok" or
the failure}, "ok": bool}``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import ext_scenario
from flwr.client import ClientApp
from flwr.common import (
    ConfigsRecord,
    Context,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
    array_from_numpy,
)
from flwr.server import Driver, ServerApp

API = SimpleNamespace(
    ConfigsRecord=ConfigsRecord,
    MetricsRecord=MetricsRecord,
    ParametersRecord=ParametersRecord,
    RecordSet=RecordSet,
    array_from_numpy=array_from_numpy,
)

app = ServerApp()
client_app = ClientApp()  # a Flower app must name one; the nodes run flwr-sdk


@app.main()
def main(driver: Driver, context: Context) -> None:
    report_path = Path(os.environ["EXT_REPORT"])
    expected_nodes = int(os.environ.get("EXT_NODES", "1"))
    node_ids = driver.get_node_ids()
    deadline = time.monotonic() + 60
    while len(node_ids) < expected_nodes and time.monotonic() < deadline:
        time.sleep(0.5)
        node_ids = driver.get_node_ids()
    report: dict = {"nodes": sorted(node_ids), "cases": {}}
    # One case at a time, to every node at once: the order of the cases matters (a
    # valid request follows the malformed ones).
    for case in ext_scenario.cases(API):
        messages = [
            driver.create_message(
                content=case.content,
                message_type=case.message_type,
                dst_node_id=node_id,
                group_id=case.name,
                ttl=120,
            )
            for node_id in node_ids
        ]
        replies = {r.metadata.src_node_id: r for r in driver.send_and_receive(messages, timeout=60)}
        for node_id in node_ids:
            key = f"{node_id}:{case.name}"
            try:
                assert node_id in replies, f"no reply from {node_id}"
                assert replies[node_id].metadata.message_type == case.message_type
                case.check(replies[node_id], node_id)
            except Exception:
                report["cases"][key] = traceback.format_exc()
            else:
                report["cases"][key] = "ok"
    report["ok"] = bool(node_ids) and all(v == "ok" for v in report["cases"].values())
    report_path.write_text(json.dumps(report, indent=1))
