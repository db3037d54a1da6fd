"""flwr-sdk code generator: turns the protos under ``proto/`` into ``generated/``.

Run ``python -m codegen`` to regenerate, ``python -m codegen --check`` to verify that the
committed output is current, and ``python -m codegen buf`` to lint and format-check every
wire line with buf. See :mod:`codegen.generator` for what is produced.
"""

from .generator import WireLine, discover_lines, generate_line
from .toolchain import GeneratedTree

__all__ = ["GeneratedTree", "WireLine", "discover_lines", "generate_line"]
