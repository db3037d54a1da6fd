"""``flwr-sdk demo`` runs a whole federation and learns: every transport, TLS, node auth."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.federation import REPO, sdk_env

CHANCE = 10.0


def _demo(*args: str, timeout: float = 150) -> tuple[str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flwr_sdk.cli", "demo", "--no-live", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**sdk_env(), "COLUMNS": "120"},
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output, time.monotonic() - started


def _final_accuracy(output: str) -> float:
    match = re.search(r"Final accuracy: ([0-9.]+)%", output)
    assert match, output
    return float(match.group(1))


def test_default_demo_learns_and_plots(tmp_path: Path) -> None:
    plot = tmp_path / "curves.png"
    output, seconds = _demo("--plot", str(plot))
    assert _final_accuracy(output) > 5 * CHANCE, output
    for rnd in range(1, 6):
        assert re.search(rf"│\s+{rnd} │", output), output
    assert "(grpc-bidi)" in output and "3 clients, 5 rounds" in output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seconds < 120


@pytest.mark.parametrize(
    "args",
    [
        ["--transport", "grpc-rere", "--rounds", "2"],
        ["--transport", "rest", "--rounds", "2"],
        ["--tls"],
        ["--auth", "--rounds", "2"],
        ["--transport", "rest", "--tls", "--rounds", "2", "--clients", "2"],
        ["--wire", "1.15", "--rounds", "2"],
        ["--wire", "1.15", "--transport", "rest", "--rounds", "2"],
        ["--wire", "1.15", "--auth", "--rounds", "2", "--clients", "2"],
        ["--wire", "1.42", "--transport", "rest", "--auth", "--rounds", "2", "--clients", "2"],
    ],
    ids=[
        "grpc-rere",
        "rest",
        "tls",
        "auth",
        "rest-tls",
        "1.15",
        "1.15-rest",
        "1.15-auth",
        "1.42-rest-auth",
    ],
)
def test_demo_variants(args: list[str]) -> None:
    output, seconds = _demo(*args)
    assert _final_accuracy(output) > 5 * CHANCE, output
    transport = "rest" if "rest" in args else "grpc-rere"
    if "--wire" in args:
        # --wire alone means grpc-rere; the clients detect the line themselves
        wire = args[args.index("--wire") + 1]
        assert f"({transport}" in output and f"Flower {wire} Fleet API" in output, output
    if "--auth" in args:
        assert f"({transport}, TLS, node auth)" in output, output
    if "--tls" in args:
        assert "TLS" in output, output
    assert seconds < 120
