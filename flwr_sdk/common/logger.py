"""Flower's ``flwr.common.log`` / ``configure`` on flwr-sdk's logger (``"flwr_sdk"``).

:func:`log` is ``logging.getLogger("flwr_sdk").log``: call it as Flower's,
``log(INFO, "round %s done", 3)``. Whether a line shows on the console depends on the
handlers and level of the ``flwr_sdk`` logger (see ``docs/flower-api.md``).

:func:`configure` adds a log file, as Flower's does. Flower can also send every log
record over HTTP to a ``host``; flwr-sdk does not send logs anywhere, so ``host`` is
refused rather than ignored.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["LOGGER_NAME", "configure", "log", "logger"]

LOGGER_NAME = "flwr_sdk"
"""Name of the logger every flwr-sdk module logs on."""

logger = logging.getLogger(LOGGER_NAME)
"""The ``flwr_sdk`` logger."""

log = logger.log
"""``log(level, msg, *args, **kwargs)``: log on the ``flwr_sdk`` logger (Flower's ``log``)."""

_files: dict[str, logging.FileHandler] = {}
_files_lock = threading.Lock()


def configure(identifier: str, filename: str | None = None, host: str | None = None) -> None:
    """Also write the ``flwr_sdk`` logger's records to ``filename``, each tagged ``identifier``.

    Lines read ``IDENTIFIER | LEVEL flwr_sdk.… TIME | FILE:LINE | MESSAGE``, as Flower's
    file log does. The file handler passes every level; which records reach it is set by
    the ``flwr_sdk`` logger's level. Calling ``configure`` again for the same file
    replaces that file's handler (Flower would add a second one and write each line
    twice). ``filename=None`` adds nothing.

    Args:
        identifier: tag at the start of every line (e.g. the client's name).
        filename: path of the log file, appended to.
        host: Flower's remote log server; not supported, must be ``None``.

    Raises:
        TypeError: ``identifier`` is not a ``str`` or ``filename`` not a ``str`` / path.
        ValueError: ``host`` is given: flwr-sdk sends no logs over the network.
        OSError: the file cannot be opened.

    """
    if not isinstance(identifier, str):
        raise TypeError(f"identifier must be a str, got {type(identifier).__name__}")
    if host is not None:
        raise ValueError(
            f"host={host!r}: flwr-sdk does not send log records to a remote server; "
            "pass host=None and collect the log file (filename=...) instead"
        )
    if filename is None:
        return
    if not isinstance(filename, (str, os.PathLike)):
        raise TypeError(f"filename must be a str or None, got {type(filename).__name__}")
    path = os.path.abspath(os.fspath(filename))
    formatter = logging.Formatter(
        f"{identifier} | %(levelname)s %(name)s %(asctime)s | %(filename)s:%(lineno)d | %(message)s"
    )
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(formatter)
    with _files_lock:
        previous = _files.pop(path, None)
        if previous is not None:
            logger.removeHandler(previous)
            previous.close()
        _files[path] = handler
        logger.addHandler(handler)
