"""flwr-sdk's round benchmark on Flower 1.42 (runs inside the flwr 1.42.0 venv)."""
