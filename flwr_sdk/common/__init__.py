"""The user-facing data model (layer 1): records, messages, contexts, legacy types.

Plain Python and NumPy: no wire classes, no transport. Flower users know these names
from ``flwr.common``.
"""
