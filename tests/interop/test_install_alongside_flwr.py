"""flwr-sdk installs next to a released ``flwr`` and neither shadows the other.

An isolated venv holds ``flwr[rest]==1.15.2`` plus flwr-sdk installed (non-editable, with
its dependencies) from this checkout. The full install is cached by a hash of
``pyproject.toml``; every run re-installs our package with ``--force-reinstall
--no-deps`` so the current code is what gets tested. This venv is separate from the plain
flwr venvs the other interop tests use.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.flower_env import FlowerEnv

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import json, sys
    from importlib.metadata import distribution, version

    import flwr
    import flwr_sdk
    import flwr_sdk.errors
    import flwr_sdk_proto.v1_12.flwr.proto as ours12
    import flwr_sdk_proto.v1_15.flwr.proto as ours15
    from flwr.proto import task_pb2, message_pb2

    def top_levels(dist):
        return sorted({str(f).split("/")[0] for f in distribution(dist).files or []})

    # Both stacks in one process: our bytes decode with flwr's class and back.
    ours = ours12.TaskIns(task_id="t", run_id=2**63, task=ours12.Task(task_type="train"))
    theirs = task_pb2.TaskIns()
    theirs.ParseFromString(bytes(ours))
    back = ours12.TaskIns.parse(theirs.SerializeToString())

    print(json.dumps({
        "flwr_file": flwr.__file__,
        "flwr_version": version("flwr"),
        "flwr_sdk_file": flwr_sdk.__file__,
        "flwr_sdk_errors_file": flwr_sdk.errors.__file__,
        "ours12_file": ours12.__file__,
        "ours15_file": ours15.__file__,
        "flwr_sdk_version": version("flwr-sdk"),
        "flwr_sdk_dist_top_levels": top_levels("flwr-sdk"),
        "flwr_dist_top_levels": top_levels("flwr"),
        "taskins": {
            "flwr": [task_pb2.TaskIns.__module__, task_pb2.TaskIns.__name__],
            "ours12": [ours12.TaskIns.__module__, ours12.TaskIns.__name__],
            "ours15": [ours15.TaskIns.__module__, ours15.TaskIns.__name__],
            "flwr_is_ours": task_pb2.TaskIns is ours12.TaskIns,
            "ours_are_distinct": ours12.TaskIns is not ours15.TaskIns,
        },
        "flwr_message_is_ours": message_pb2.Message is ours15.Message,
        "cross_decode": [theirs.run_id, theirs.task.task_type, back == ours],
        "flwr_modules_outside_flwr": sorted(
            name for name, mod in sys.modules.items()
            if (name == "flwr" or name.startswith("flwr."))
            and getattr(mod, "__file__", None)
            and "/site-packages/flwr/" not in mod.__file__
        ),
    }))
    """
)


def pyproject_hash() -> str:
    return hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def sdk_env():
    """flwr[rest]==1.15.2 + flwr-sdk from this checkout; holds the venv's lock while used."""
    env = FlowerEnv.get(
        "1.15.2",
        extra=[str(REPO)],
        name="flwr-1.15.2-with-flwr-sdk",
        cache_key=[f"flwr-sdk (pyproject.toml sha256 {pyproject_hash()})"],
    )
    with env.lock():  # concurrent runs must not reinstall under each other's feet
        env.pip("install", "--quiet", "--force-reinstall", "--no-deps", str(REPO))
        yield env


def test_pip_check_passes(sdk_env):
    done = sdk_env.run(
        [sdk_env.python, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"dependency conflict:\n{done.stdout}{done.stderr}"
    installed = sdk_env.pip("list", "--format=json")
    versions = {p["name"].lower(): p["version"] for p in json.loads(installed)}
    assert versions["flwr"] == "1.15.2"
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert declared is not None
    assert versions["flwr-sdk"] == declared.group(1)


def test_flwr_and_flwr_sdk_import_side_by_side(sdk_env, tmp_path):
    done = sdk_env.run(
        [sdk_env.python, "-I", "-c", PROBE],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,  # never the checkout: it must not be what gets imported
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    site = sdk_env.site_packages

    def under(path: str, *parts: str) -> bool:
        return Path(path).resolve().is_relative_to(site.joinpath(*parts))

    assert info["flwr_version"] == "1.15.2"
    assert under(info["flwr_file"], "flwr"), info["flwr_file"]
    assert under(info["flwr_sdk_file"], "flwr_sdk"), info["flwr_sdk_file"]
    assert under(info["flwr_sdk_errors_file"], "flwr_sdk"), info["flwr_sdk_errors_file"]
    assert under(info["ours12_file"], "flwr_sdk_proto", "v1_12"), info["ours12_file"]
    assert under(info["ours15_file"], "flwr_sdk_proto", "v1_15"), info["ours15_file"]

    # No package of one distribution lives in the other's namespace.
    ours_top = set(info["flwr_sdk_dist_top_levels"])
    assert "flwr" not in ours_top, ours_top
    assert {"flwr_sdk", "flwr_sdk_proto"} <= ours_top, ours_top
    assert not {name for name in info["flwr_dist_top_levels"] if name.startswith("flwr_sdk")}
    assert info["flwr_modules_outside_flwr"] == []

    # Both define a TaskIns (and a Message): different classes, from different modules.
    taskins = info["taskins"]
    assert taskins["flwr"] == ["flwr.proto.task_pb2", "TaskIns"]
    assert taskins["ours12"][1] == taskins["ours15"][1] == "TaskIns"
    assert taskins["ours12"][0].startswith("flwr_sdk_proto.v1_12.")
    assert taskins["ours15"][0].startswith("flwr_sdk_proto.v1_15.")
    assert taskins["flwr_is_ours"] is False and taskins["ours_are_distinct"] is True
    assert info["flwr_message_is_ours"] is False

    # ...and they interoperate inside one interpreter.
    assert info["cross_decode"] == [2**63, "train", True]


def test_installed_package_is_the_current_checkout(sdk_env):
    installed = sdk_env.site_packages / "flwr_sdk" / "__init__.py"
    assert installed.read_bytes() == (REPO / "flwr_sdk" / "__init__.py").read_bytes()
    for line in ("v1_12", "v1_15"):
        rel = Path("flwr_sdk_proto") / line / "registry.py"
        assert (sdk_env.site_packages / rel).read_bytes() == (REPO / "generated" / rel).read_bytes()
    # Installed as a regular (non-editable) distribution: no path hook back into the repo.
    pth = [p.name for p in sdk_env.site_packages.glob("*.pth") if "flwr_sdk" in p.name]
    assert pth == []
    direct_url = next(sdk_env.site_packages.glob("flwr_sdk-*.dist-info/direct_url.json"))
    assert json.loads(direct_url.read_text()).get("dir_info", {}).get("editable") is not True
    assert sys.prefix != str(sdk_env.path)


def test_interpreter_of_tests_has_no_flwr():
    """The reverse: real flwr never lands in the interpreter that runs our tests."""
    done = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('flwr'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "None"
