"""Compile ``.proto`` files to descriptors with the protoc bundled in grpcio-tools."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2


class ProtocError(RuntimeError):
    """protoc rejected the input files."""


def run_protoc(
    include_dirs: Sequence[Path], files: Sequence[Path], extra_args: Sequence[str]
) -> None:
    """Run grpcio-tools' protoc in a child interpreter and raise on failure.

    A child process keeps protoc's global state and its plugin subprocesses away from
    the caller. It runs in an empty folder with this interpreter's scripts first on PATH:
    the betterproto2 plugin formats its output with ``ruff``, which must be the pinned
    one and must not pick up any project's ruff settings, or output would vary.
    """
    args = [sys.executable, "-m", "grpc_tools.protoc"]
    args += [f"-I{Path(d).resolve()}" for d in include_dirs]
    args += list(extra_args)
    args += [str(f) for f in files]
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with tempfile.TemporaryDirectory(prefix="flwr-sdk-protoc-") as cwd:
        done = subprocess.run(args, capture_output=True, text=True, check=False, cwd=cwd, env=env)
    if done.returncode != 0:
        raise ProtocError(f"protoc failed ({done.returncode}):\n{done.stderr.strip()}")


def compile_descriptor_set(
    proto_root: Path, files: Sequence[Path]
) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``files`` (paths relative to ``proto_root``) into a FileDescriptorSet."""
    with tempfile.TemporaryDirectory(prefix="flwr-sdk-desc-") as tmp:
        out = Path(tmp) / "descriptors.binpb"
        run_protoc(
            [proto_root],
            files,
            [f"--descriptor_set_out={out}", "--include_imports", "--include_source_info"],
        )
        fds = descriptor_pb2.FileDescriptorSet()
        fds.ParseFromString(out.read_bytes())
    return fds
