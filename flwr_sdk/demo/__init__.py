"""``flwr-sdk demo``: a whole federation on one machine with one command.

The reference server (in-process) and N client processes on loopback train a
multinomial logistic regression on deterministic synthetic data split non-IID across the
clients, with FedAvg, and show the progress live. See :func:`flwr_sdk.demo.runner.run_demo`.
"""

from flwr_sdk.demo.runner import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
