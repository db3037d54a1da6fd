"""Run config from a FAB: [tool.flwr.app.config] flattened, overlaid with overrides."""

from __future__ import annotations

import io
import zipfile

import pytest

from flwr_sdk.common.fab import (
    MAX_PYPROJECT_BYTES,
    FabError,
    app_config_from_fab,
    fab_hash,
    flatten_config,
    run_config_from_fab,
)

PYPROJECT = b"""
[project]
name = "demo"
version = "1.0.0"

[tool.flwr.app]
publisher = "me"

[tool.flwr.app.components]
serverapp = "demo.server:app"
clientapp = "demo.client:app"

[tool.flwr.app.config]
num-server-rounds = 3
lr = 0.1
use-gpu = false
label = "x"

[tool.flwr.app.config.opt]
momentum = 0.9
inner = { depth = 2 }
"""


def make_fab(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_flattened_defaults() -> None:
    fab = make_fab({"pyproject.toml": PYPROJECT, "demo/server.py": b"raise SystemExit"})
    assert app_config_from_fab(fab) == {
        "num-server-rounds": 3,
        "lr": 0.1,
        "use-gpu": False,
        "label": "x",
        "opt.momentum": 0.9,
        "opt.inner.depth": 2,
    }


def test_overrides_replace_declared_keys_only() -> None:
    fab = make_fab({"pyproject.toml": PYPROJECT})
    config = run_config_from_fab(fab, {"lr": 0.5, "opt.momentum": 0.0, "unknown": 1})
    assert config["lr"] == 0.5
    assert config["opt.momentum"] == 0.0
    assert "unknown" not in config
    assert config["label"] == "x"


def test_app_without_config_section() -> None:
    fab = make_fab({"pyproject.toml": b'[tool.flwr.app]\npublisher = "me"\n'})
    assert app_config_from_fab(fab) == {}
    assert run_config_from_fab(fab, {"a": 1}) == {}


@pytest.mark.parametrize(
    ("fab", "message"),
    [
        (b"not a zip", "not a ZIP"),
        (make_fab({"other.txt": b""}), "no top-level pyproject.toml"),
        (make_fab({"pyproject.toml": b"[[[ nope"}), "not valid TOML"),
        (make_fab({"pyproject.toml": b"[tool.flwr.app.config]\nx = [1, 2]\n"}), "only bool"),
        (make_fab({"pyproject.toml": b"[tool.flwr.app]\nconfig = 3\n"}), "not a table"),
    ],
)
def test_unusable_fabs(fab: bytes, message: str) -> None:
    with pytest.raises(FabError, match=message):
        app_config_from_fab(fab)


def test_oversized_pyproject_is_refused_before_reading() -> None:
    # Highly compressible: a small FAB that would inflate past the limit.
    big = b"# " + b"a" * (MAX_PYPROJECT_BYTES + 10) + b"\n"
    fab = make_fab({"pyproject.toml": big})
    assert len(fab) < MAX_PYPROJECT_BYTES // 10
    with pytest.raises(FabError, match="limit"):
        app_config_from_fab(fab)


def test_flatten_and_hash() -> None:
    assert flatten_config({"a": {"b": {"c": "d"}}, "e": 1}) == {"a.b.c": "d", "e": 1}
    assert fab_hash(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
