"""Driver-API ServerApp of the round benchmark (grpc-rere; flwr 1.12.0 venv).

The round loop is :func:`rere_app.rounds.serve_rounds`, shared with the 1.15 driver
(``scripts/rere_driver_1_15.py``).
"""

from __future__ import annotations

from flwr.common import Context
from flwr.server import Driver, ServerApp

from rere_app.rounds import serve_rounds

app = ServerApp()


@app.main()
def main(driver: Driver, context: Context) -> None:
    serve_rounds(driver)
