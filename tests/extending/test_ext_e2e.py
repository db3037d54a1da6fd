"""End to end: custom message types from a plain-flwr server to typed handlers.

The node is ``examples/extending/client.py`` (typed handlers for ``demo.v1.SquareRequest``
and ``demo.v1.StatsRequest`` next to a legacy client). The scenario
(``apps/ext_server/ext_scenario.py``) sends both types, built with RecordSet APIs per
``docs/extending.md``, plus malformed requests (missing field, wrong value type, wrong
record kind) and an unknown type, then a valid request again; it checks every reply
field and that each error reply's reason names the field or type.

* against a real flwr 1.12.0 SuperLink, driven by a real 1.12.0 ServerApp (Driver API,
  plain flwr, its own virtualenv), over grpc-rere and REST;
* against flwr-sdk's reference server (its Fleet node pool), over grpc-rere and REST.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from support.federation import Process, processes, sdk_env
from support.flower_env import FlowerEnv
from support.superlink import _popen, start_superlink

from flwr_sdk.common.message import Message, Metadata
from flwr_sdk.common.records import Array, ConfigsRecord, MetricsRecord, ParametersRecord, RecordSet
from flwr_sdk.server.app import ReferenceServer, ServerConfig

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).resolve().parent / "apps" / "ext_server"

SDK_API = SimpleNamespace(
    ConfigsRecord=ConfigsRecord,
    MetricsRecord=MetricsRecord,
    ParametersRecord=ParametersRecord,
    RecordSet=RecordSet,
    array_from_numpy=Array.from_numpy,
)


def load_scenario() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ext_scenario", APP / "ext_scenario.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ext_scenario"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def start_example_client(tmp: Path, address: str, transport: str, name: str) -> Process:
    args = [
        sys.executable,
        "-m",
        "examples.extending.client",
        "--server-address",
        address,
        "--transport",
        transport,
    ]
    return Process(
        args, tmp / f"{name}.log", lambda a, **kw: subprocess.Popen(a, env=sdk_env(), **kw)
    )


@pytest.mark.interop
@pytest.mark.parametrize("transport", ["grpc-rere", "rest"])
def test_flwr_112_server_app_talks_to_typed_handlers(
    tmp_path: Path, flwr_1_12: FlowerEnv, transport: str
):
    report_path = tmp_path / "report.json"
    with processes() as started:
        superlink = start_superlink(flwr_1_12, tmp_path / "superlink", fleet_api_type=transport)
        started.append(superlink.process)
        clients = [
            start_example_client(tmp_path, superlink.fleet_address, transport, f"client{i}")
            for i in range(2)
        ]
        started.extend(clients)
        server_app = Process(
            [
                "flower-server-app",
                str(APP),
                "--superlink",
                superlink.driver_address,
                *superlink.security_args(),
            ],
            tmp_path / "serverapp.log",
            _popen(
                flwr_1_12,
                superlink.workdir,
                {"EXT_REPORT": str(report_path), "EXT_NODES": "2"},
            ),
        )
        started.append(server_app)
        code = server_app.wait(timeout=240)
        logs = "\n".join(f"--- {p.log.name}\n{p.output()}" for p in [server_app, *clients])
        assert code == 0, logs
        assert report_path.exists(), logs
        report: dict[str, Any] = json.loads(report_path.read_text())
        failures = {k: v for k, v in report["cases"].items() if v != "ok"}
        assert not failures, f"{json.dumps(failures, indent=1)}\n{logs}"
        assert len(report["nodes"]) == 2, report
        names = [case.name for case in load_scenario().cases(SDK_API)]
        assert sorted(report["cases"]) == sorted(
            f"{node}:{name}" for node in report["nodes"] for name in names
        )
        assert report["ok"] is True
        for client in clients:  # still serving after the malformed requests
            assert client.proc.poll() is None, client.output()


async def _run_reference_scenario(tmp_path: Path, transport: str) -> list[str]:
    scenario = load_scenario()
    config = ServerConfig(transport=transport, port=0)
    async with ReferenceServer(config) as server:
        with processes() as started:
            client = start_example_client(tmp_path, server.address, transport, "client")
            started.append(client)
            try:
                (node_id,) = await server.pool.wait_for(1, timeout=60)
            except Exception:
                pytest.fail(f"node did not connect:\n{client.output()}")
            checked = []
            for case in scenario.cases(SDK_API):
                message = Message(
                    Metadata(
                        run_id=server.run_id,
                        message_id=str(uuid.uuid4()),
                        src_node_id=0,
                        dst_node_id=node_id,
                        reply_to_message="",
                        group_id=case.name,
                        ttl=120.0,
                        message_type=case.message_type,
                    ),
                    content=case.content,
                )
                reply = await server.pool.request(message, timeout=60)
                assert reply.metadata.message_type == case.message_type
                try:
                    case.check(reply, node_id)
                except AssertionError as exc:
                    raise AssertionError(f"{case.name}: {exc}\n{client.output()}") from exc
                checked.append(case.name)
            assert client.proc.poll() is None, client.output()
            return checked


@pytest.mark.parametrize("transport", ["grpc-rere", "rest"])
def test_reference_server_talks_to_typed_handlers(tmp_path: Path, transport: str):
    checked = asyncio.run(_run_reference_scenario(tmp_path, transport))
    assert checked == [case.name for case in load_scenario().cases(SDK_API)]


def test_example_handlers_pass_mypy_strict():
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "examples/extending/client.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stdout + done.stderr
