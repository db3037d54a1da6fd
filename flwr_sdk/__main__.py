"""``python -m flwr_sdk``: the ``flwr-sdk`` command (:func:`flwr_sdk.cli.main`)."""

import sys

from flwr_sdk.cli import main

if __name__ == "__main__":
    sys.exit(main())
