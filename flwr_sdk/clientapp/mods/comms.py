"""Mods that log how much an instruction carries: ``message_size_mod``, ``parameters_size_mod``.

Both look at the message the server sent (before the rest of the chain runs), log at
INFO on the ``flwr_sdk`` logger and pass the message on unchanged. Sizes are counted as
Flower 1.12 counts them (so the numbers match Flower's logs):

* an :class:`~flwr_sdk.common.records.Array` counts its ``data`` bytes, every record
  key counts its length;
* a metrics value counts 8 bytes (a list 8 per element);
* a configs value counts 1 byte for a ``bool``, 8 for an ``int`` or ``float`` and its
  length for a ``str`` or ``bytes`` (lists: the sum over their elements).

Where Flower fails instead of counting (an empty ``str`` / ``bytes`` value or an empty
list in a ConfigsRecord raises there), these count 0.
"""

from __future__ import annotations

import logging

import numpy as np

from flwr_sdk.clientapp.app import ClientAppCallable
from flwr_sdk.common._npy import peek_npy
from flwr_sdk.common.context import Context
from flwr_sdk.common.message import Message
from flwr_sdk.common.records import (
    NUMPY_STYPE,
    Array,
    ConfigsRecord,
    ConfigsRecordValues,
    MetricsRecord,
    ParametersRecord,
    RecordSet,
)

__all__ = [
    "configs_record_bytes",
    "message_size_mod",
    "metrics_record_bytes",
    "parameters_record_bytes",
    "parameters_size_mod",
    "recordset_bytes",
]

logger = logging.getLogger("flwr_sdk")

_NUMBER_BYTES = 8  # ints and floats travel as 64-bit values


def parameters_record_bytes(record: ParametersRecord) -> int:
    """Bytes of a ParametersRecord as Flower counts them: data plus key lengths."""
    return sum(len(array.data) + len(key) for key, array in record.items())


def metrics_record_bytes(record: MetricsRecord) -> int:
    """Bytes of a MetricsRecord as Flower counts them: 8 per number plus key lengths."""
    total = 0
    for key, value in record.items():
        count = len(value) if isinstance(value, list) else 1
        total += _NUMBER_BYTES * count + len(key)
    return total


def _config_scalar_bytes(value: object) -> int:
    if isinstance(value, bool):
        return 1
    if isinstance(value, (int, float)):
        return _NUMBER_BYTES
    if isinstance(value, (str, bytes)):
        return len(value)
    return 0


def _config_value_bytes(value: ConfigsRecordValues) -> int:
    if isinstance(value, list):
        return sum(_config_scalar_bytes(item) for item in value)
    return _config_scalar_bytes(value)


def configs_record_bytes(record: ConfigsRecord) -> int:
    """Bytes of a ConfigsRecord as Flower counts them (see the module docstring)."""
    return sum(_config_value_bytes(value) + len(key) for key, value in record.items())


def recordset_bytes(recordset: RecordSet) -> int:
    """Bytes of every record of ``recordset``, as ``message_size_mod`` logs them."""
    return (
        sum(parameters_record_bytes(r) for r in recordset.parameters_records.values())
        + sum(configs_record_bytes(r) for r in recordset.configs_records.values())
        + sum(metrics_record_bytes(r) for r in recordset.metrics_records.values())
    )


def _parameter_count(array: Array) -> int:
    if array.shape:
        return int(np.prod(array.shape))
    if array.stype == NUMPY_STYPE:
        # Legacy tensors carry no shape: read it from the .npy header (no copy).
        return int(peek_npy(array.data).size)
    return 0  # an opaque tensor: its element count is unknown


def message_size_mod(message: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Log the size in bytes of the instruction's content, then pass it on.

    Logs one INFO line ``message_size_mod: the message carries N bytes`` (see the module
    docstring for how bytes are counted). A message that carries an error is passed on
    without a line.
    """
    if message.has_content():
        size = recordset_bytes(message.content)
        logger.info("message_size_mod: the message carries %i bytes", size)
    return call_next(message, context)


def parameters_size_mod(
    message: Message, context: Context, call_next: ClientAppCallable
) -> Message:
    """Log how many parameters (and bytes) each ParametersRecord carries, then pass it on.

    Logs one INFO line per ParametersRecord (``parameters_size_mod: record 'NAME': P
    parameters, B bytes``) and one with the total bytes, as Flower 1.12 does. A message
    that carries an error is passed on without lines.
    """
    if message.has_content():
        total = 0
        for name, record in message.content.parameters_records.items():
            size = parameters_record_bytes(record)
            count = sum(_parameter_count(array) for array in record.values())
            total += size
            logger.info(
                "parameters_size_mod: record %r: %i parameters, %i bytes", name, count, size
            )
        logger.info("parameters_size_mod: %i bytes of parameters in total", total)
    return call_next(message, context)
