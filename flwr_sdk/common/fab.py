"""Read the run configuration out of a Flower App Bundle (FAB), without installing it.

A FAB is a ZIP archive holding a Flower app: its ``pyproject.toml`` at the top level plus
the app's sources. A client node needs only one thing from it, the app's default run
configuration, ``[tool.flwr.app.config]``; Flower 1.12 installs the whole app with
``pip install -e`` to get there. flwr-sdk never installs, imports or executes anything
from a FAB: it reads ``pyproject.toml`` (size-checked before it is decompressed) and
nothing else.

Flower's rules, reproduced by :func:`run_config_from_fab`:

* nested tables are flattened with ``"."`` (``[tool.flwr.app.config.opt] lr = 0.1`` →
  ``"opt.lr"``); values must be ``bool``, ``int``, ``float`` or ``str``;
* the run's ``override_config`` (``flwr run --run-config``) replaces values of keys that
  exist in the defaults; override keys the app does not declare are ignored.
"""

from __future__ import annotations

import hashlib
import io
import logging
import sys
import zipfile
from collections.abc import Mapping
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "MAX_PYPROJECT_BYTES",
    "FabError",
    "app_config_from_fab",
    "fab_hash",
    "flatten_config",
    "run_config_from_fab",
]

log = logging.getLogger("flwr_sdk")

MAX_PYPROJECT_BYTES = 1 << 20
"""Largest ``pyproject.toml`` read from a FAB (1 MiB, checked before decompressing)."""

PYPROJECT = "pyproject.toml"

ConfigValue = bool | int | float | str


class FabError(ValueError):
    """A FAB is not a ZIP, has no usable ``pyproject.toml``, or its config is invalid."""


def fab_hash(content: bytes) -> str:
    """The hash Flower names a FAB by: SHA-256 of its bytes, lowercase hex."""
    return hashlib.sha256(content).hexdigest()


def flatten_config(table: Mapping[str, Any], prefix: str = "") -> dict[str, ConfigValue]:
    """Flatten nested TOML tables into ``"a.b.c"`` keys (Flower's ``flatten_dict``).

    Raises:
        FabError: a value is not a bool, int, float, str or table of those.

    """
    flat: dict[str, ConfigValue] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, name))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            raise FabError(
                f"run config value {name!r} is a {type(value).__name__}; only bool, int, "
                "float, str and tables of those are allowed"
            )
    return flat


def _read_pyproject(content: bytes) -> bytes:
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise FabError(f"the FAB is not a ZIP archive: {exc}") from exc
    with archive:
        try:
            info = archive.getinfo(PYPROJECT)
        except KeyError:
            raise FabError(f"the FAB has no top-level {PYPROJECT}") from None
        if info.file_size > MAX_PYPROJECT_BYTES:
            raise FabError(
                f"the FAB's {PYPROJECT} is {info.file_size} bytes; the limit is "
                f"{MAX_PYPROJECT_BYTES}"
            )
        try:
            with archive.open(info) as member:
                # Never trust the header alone: read at most one byte past the limit.
                data = member.read(MAX_PYPROJECT_BYTES + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            raise FabError(f"cannot read {PYPROJECT} from the FAB: {exc}") from exc
    if len(data) > MAX_PYPROJECT_BYTES:
        raise FabError(f"the FAB's {PYPROJECT} exceeds {MAX_PYPROJECT_BYTES} bytes")
    return data


def app_config_from_fab(content: bytes) -> dict[str, ConfigValue]:
    """The flattened ``[tool.flwr.app.config]`` of a FAB (``{}`` when it declares none).

    Raises:
        FabError: not a ZIP, no ``pyproject.toml``, invalid TOML or invalid config values.

    """
    raw = _read_pyproject(content)
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FabError(f"the FAB's {PYPROJECT} is not valid TOML: {exc}") from exc
    section: Any = document
    for key in ("tool", "flwr", "app", "config"):
        if not isinstance(section, Mapping) or key not in section:
            return {}
        section = section[key]
    if not isinstance(section, Mapping):
        raise FabError("[tool.flwr.app.config] in the FAB is not a table")
    return flatten_config(section)


def run_config_from_fab(content: bytes, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A run's ``run_config``: the FAB's defaults overlaid with the run's overrides.

    Override keys absent from the defaults are ignored (logged at debug level).

    Raises:
        FabError: see :func:`app_config_from_fab`.

    """
    config: dict[str, Any] = app_config_from_fab(content)
    ignored = sorted(k for k in overrides if k not in config)
    if ignored:
        log.debug("Ignoring run config overrides the app does not declare: %s", ignored)
    config.update({k: v for k, v in overrides.items() if k in config})
    return config
