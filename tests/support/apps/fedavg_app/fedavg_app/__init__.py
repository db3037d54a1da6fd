"""Recording FedAvg app for flwr-sdk interop tests (runs inside a flwr 1.12 venv)."""
