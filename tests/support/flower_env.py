"""Isolated, cached virtualenvs with real Flower releases installed, for interop tests.

Real ``flwr`` is never imported into the interpreter that runs our tests: each release
lives in its own virtualenv, built on first use and cached between runs under
``${FLWR_SDK_CACHE:-~/.cache/flwr-sdk}/venvs/<name>-<hash>``, where the hash covers the
pinned requirement list and the base interpreter's version. Typical use::

    env = FlowerEnv.get("1.12.0")
    env.run(["flower-superlink", "--version"], check=True)
    proc = env.popen([env.python, "-c", "import flwr"], stdout=subprocess.PIPE)

Building takes a minute or two and is guarded by an exclusive file lock, so concurrent
test processes build each venv once. A ``.complete`` marker written last tells a finished
venv from a half-built one, which is deleted and rebuilt. A venv that cannot be built raises
:class:`FlowerEnvError`; callers must let that fail the test, never skip it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FLOWER_REQUIREMENTS",
    "FlowerEnv",
    "FlowerEnvError",
    "FlowerWorker",
    "WorkerError",
    "cache_root",
    "clean_environ",
]

log = logging.getLogger("flwr_sdk.tests.flower_env")

# Pinned requirement lists, one per Flower release we test against.
# * click 8.1.8: the flwr CLI of 1.12/1.15 crashes with click >= 8.2.
# * numpy: 1.12.0 requires numpy<2; 1.15.2 accepts <3, pinned to a release with wheels
#   for Python 3.10-3.13.
# * 1.42.0 serves the legacy grpc-bidi ``start_server`` (``flwr.server.start_server``);
#   importing it needs nothing beyond flwr's own dependencies.
FLOWER_REQUIREMENTS: Mapping[str, tuple[str, ...]] = {
    "1.12.0": ("flwr[rest]==1.12.0", "numpy==1.26.4", "click==8.1.8"),
    "1.15.2": ("flwr[rest]==1.15.2", "numpy==2.2.6", "click==8.1.8"),
    "1.42.0": ("flwr==1.42.0",),
}

COMPLETE_MARKER = ".complete"
PIP_TIMEOUT_S = 900.0

# Variables that would leak our interpreter's setup into a venv's processes.
_LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


class FlowerEnvError(RuntimeError):
    """A Flower virtualenv could not be built or is unusable."""


def cache_root() -> Path:
    """Root of flwr-sdk's test caches (``$FLWR_SDK_CACHE`` or ``~/.cache/flwr-sdk``)."""
    configured = os.environ.get("FLWR_SDK_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "flwr-sdk"


def clean_environ(bin_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: ``os.environ``) fit for running a venv's programs.

    Drops variables that would make the venv's interpreter import our checkout (e.g.
    ``PYTHONPATH=generated:.``), puts ``bin_dir`` first on ``PATH`` and sets
    ``VIRTUAL_ENV``, as ``activate`` would.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _LEAKY_ENV}
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", os.defpath)])
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def _announce(message: str) -> None:
    """Log progress and show it live, past pytest's output capture (builds are slow)."""
    log.info("%s", message)
    stream = sys.__stderr__
    if stream is not None:
        stream.write(f"[flwr-sdk test env] {message}\n")
        stream.flush()


def _short_hash(parts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class FlowerEnv:
    """One built, cached virtualenv (normally holding a Flower release)."""

    name: str
    path: Path
    requirements: tuple[str, ...]

    # ----------------------------------------------------------------- construction

    @classmethod
    def get(
        cls,
        version: str,
        *,
        extra: Sequence[str] = (),
        name: str | None = None,
        cache_key: Sequence[str] | None = None,
    ) -> FlowerEnv:
        """The venv holding ``flwr==version`` (built on first use).

        ``extra`` adds requirements on top of the release's pinned list; give such a venv
        its own ``name`` so that the plain release venvs stay clean. ``cache_key``
        replaces ``extra`` in the cache hash, for requirements whose text varies between
        checkouts (e.g. a local path) while their meaning does not.
        """
        try:
            base = FLOWER_REQUIREMENTS[version]
        except KeyError:
            known = ", ".join(sorted(FLOWER_REQUIREMENTS))
            raise ValueError(f"unknown Flower version {version!r}; known: {known}") from None
        return cls.build(
            name or f"flwr-{version}",
            [*base, *extra],
            cache_key=None if cache_key is None else [*base, *cache_key],
        )

    @classmethod
    def build(
        cls,
        name: str,
        requirements: Sequence[str],
        *,
        cache_key: Sequence[str] | None = None,
    ) -> FlowerEnv:
        """A cached venv named ``name`` with ``requirements`` pip-installed (built once)."""
        if not requirements:
            raise ValueError("requirements must not be empty")
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        key = [f"python{py}", sys.base_prefix, *(cache_key or requirements)]
        path = cache_root() / "venvs" / f"{name}-{_short_hash(key)}"
        env = cls(name, path, tuple(requirements))
        if env.is_complete():
            return env
        with env.lock():
            if not env.is_complete():  # another process may have built it meanwhile
                env._create()
        return env

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold this venv's exclusive build lock (e.g. while changing what is installed)."""
        with _exclusive_lock(self._lock_path()):
            yield

    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def is_complete(self) -> bool:
        """Whether the venv was fully built (its marker exists and its python runs)."""
        return (self.path / COMPLETE_MARKER).is_file() and self.python.exists()

    def _create(self) -> None:
        if self.path.exists():
            _announce(f"removing half-built venv {self.path}")
            shutil.rmtree(self.path)
        started = time.monotonic()
        _announce(
            f"building venv {self.path.name} ({' '.join(self.requirements)}); "
            "this takes a minute or two, once"
        )
        build_log = self.path.with_name(self.path.name + ".build.log")
        with build_log.open("w") as out:
            self._step(out, [_base_python(), "-m", "venv", str(self.path)])
            self._step(out, [str(self.python), "-m", "pip", "install", *self.requirements])
            freeze = self._step(out, [str(self.python), "-m", "pip", "freeze", "--all"])
        marker = {
            "name": self.name,
            "requirements": list(self.requirements),
            "python": str(self.python),
            "freeze": freeze.splitlines(),
        }
        (self.path / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        _announce(f"built {self.path.name} in {time.monotonic() - started:.0f} s")

    def _step(self, out: Any, args: list[str]) -> str:
        """Run one build command, appending its output to the build log."""
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        try:
            done = subprocess.run(
                args,
                capture_output=True,
                text=True,
                check=False,
                env=clean_environ(self.bin_dir),
                timeout=PIP_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise FlowerEnvError(f"{self.name}: timed out after {PIP_TIMEOUT_S} s: {args}") from exc
        out.write(done.stdout)
        out.write(done.stderr)
        out.flush()
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
            raise FlowerEnvError(
                f"{self.name}: command failed ({done.returncode}): {' '.join(args)}\n{tail}"
            )
        return done.stdout

    # ------------------------------------------------------------------------ use

    @property
    def site_packages(self) -> Path:
        """The venv's ``site-packages`` folder."""
        found = sorted(self.path.glob("lib/python*/site-packages"))
        if len(found) != 1:
            raise FlowerEnvError(f"{self.name}: expected one site-packages, found {found}")
        return found[0]

    @property
    def bin_dir(self) -> Path:
        """The venv's scripts folder (``python``, ``pip``, ``flower-superlink``, ...)."""
        return self.path / "bin"

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.bin_dir / "python"

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for this venv's processes (see :func:`clean_environ`), plus ``extra``."""
        env = clean_environ(self.bin_dir)
        env.update(extra or {})
        return env

    def _resolve(self, args: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Argument list with a bare first word resolved to this venv's script if present."""
        argv = [os.fspath(a) for a in args]
        if not argv:
            raise ValueError("args must not be empty")
        first = argv[0]
        if os.sep not in first and (self.bin_dir / first).exists():
            argv[0] = str(self.bin_dir / first)
        return argv

    def run(
        self, args: Sequence[str | os.PathLike[str]], **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` in this venv (``python``, ``pip``, ... resolve to its own).

        ``env`` defaults to :meth:`environ`; pass ``env=env.environ({...})`` to add variables.
        """
        kwargs.setdefault("env", self.environ())
        return subprocess.run(self._resolve(args), **kwargs)

    def popen(self, args: Sequence[str | os.PathLike[str]], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` in this venv; see :meth:`run`."""
        kwargs.setdefault("env", self.environ())
        return subprocess.Popen(self._resolve(args), **kwargs)

    def pip(self, *args: str, timeout: float = PIP_TIMEOUT_S) -> str:
        """Run ``python -m pip ARGS`` here; return its stdout, raise FlowerEnvError on failure."""
        done = self.run(
            [self.python, "-m", "pip", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise FlowerEnvError(
                f"{self.name}: pip {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}"
            )
        return str(done.stdout)


def _base_python() -> str:
    """The interpreter to create venvs from: ours (``venv`` resolves to its base)."""
    return sys.executable


WORKER_SCRIPT = Path(__file__).resolve().with_name("flwr_worker.py")


class WorkerError(RuntimeError):
    """The worker in a Flower venv failed a request or died."""


class FlowerWorker:
    """A long-lived ``flwr_worker.py`` process in a Flower venv, spoken to in JSON lines.

    Use one per venv per test session (starting one costs about a second: it imports
    flwr's protobuf modules). Not thread-safe.
    """

    def __init__(self, env: FlowerEnv) -> None:
        self.env = env
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self._proc = env.popen(
            [env.python, "-I", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return the reply, raise :class:`WorkerError` if not ok."""
        proc = self._proc
        if proc.stdin is None or proc.stdout is None or proc.poll() is not None:
            raise WorkerError(f"{self.env.name} worker is not running{self._stderr_tail()}")
        try:
            proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            proc.stdin.flush()
        except BrokenPipeError as exc:
            raise WorkerError(f"{self.env.name} worker died{self._stderr_tail()}") from exc
        line = proc.stdout.readline()
        if not line:
            raise WorkerError(f"{self.env.name} worker died{self._stderr_tail()}")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(
                f"{self.env.name} worker: {op} failed: {reply.get('error')}\n"
                f"{reply.get('traceback', '')}"
            )
        return reply

    def ping(self) -> dict[str, Any]:
        """Versions seen by the worker (flwr, protobuf, python) and the modules it loaded."""
        return self.request("ping")

    def descriptors(self) -> dict[str, Any]:
        """Canonical dump of flwr's client-facing messages, enums and services."""
        return self.request("descriptors")

    def parse(self, type_name: str, data: bytes) -> tuple[dict[str, Any], bytes]:
        """Decode ``data`` as ``type_name`` with flwr's class.

        Returns ``json_format.MessageToDict`` of it (proto field names) and flwr's own
        re-serialisation.
        """
        reply = self.request("parse", type=type_name, data=base64.b64encode(data).decode("ascii"))
        return reply["dict"], base64.b64decode(reply["data"])

    def build(self, type_name: str, value: Mapping[str, Any]) -> tuple[bytes, dict[str, Any]]:
        """Build ``type_name`` from its proto-JSON ``value`` with flwr; return its bytes.

        Also returns ``MessageToDict`` of what flwr built.
        """
        reply = self.request("build", type=type_name, dict=value)
        return base64.b64decode(reply["data"]), reply["dict"]

    def close(self) -> None:
        """Stop the worker (closing its stdin ends it) and release its files."""
        proc = self._proc
        if proc.stdin is not None and not proc.stdin.closed:
            with suppress(BrokenPipeError):
                proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> FlowerWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read()
        except ValueError:  # already closed
            return ""
        tail = "\n".join(text.strip().splitlines()[-30:])
        return f"; its stderr:\n{tail}" if tail else ""
