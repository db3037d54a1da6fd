"""Compile ``.proto`` files to descriptors (kept for ``bench/`` and the interop tests).

The implementation lives in :mod:`codegen.toolchain`; this module names the same objects.
"""

from __future__ import annotations

from .toolchain import ProtocError, compile_descriptor_set, run_protoc

__all__ = ["ProtocError", "compile_descriptor_set", "run_protoc"]
