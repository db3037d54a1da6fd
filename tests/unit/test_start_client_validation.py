"""start_client validates every argument up front, with the exact exception type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import flwr_sdk
from flwr_sdk import Client, Context, NumPyClient, start_client
from flwr_sdk.client import ClientApp
from flwr_sdk.server.tls_material import make_ca
from flwr_sdk.validation import validate


class _Numpy(NumPyClient):
    pass


def _fn(context: Context) -> Client:
    return _Numpy().to_client()


def _args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "server_address": "127.0.0.1:8080",
        "client_fn": _fn,
        "client": None,
        "grpc_max_message_length": 536_870_912,
        "root_certificates": None,
        "insecure": None,
        "transport": None,
        "authentication_keys": None,
        "max_retries": None,
        "max_wait_time": None,
    }
    args.update(overrides)
    return args


def _keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey]:
    private = ec.generate_private_key(ec.SECP384R1())
    return private, private.public_key()


@pytest.fixture(scope="module")
def ca_pem() -> bytes:
    return make_ca().cert_pem


def test_valid_defaults() -> None:
    config = validate(**_args())
    assert config.transport == "grpc-bidi"
    assert config.settings.insecure is True
    assert config.settings.max_message_length == 536_870_912


@pytest.mark.parametrize(
    ("overrides", "error", "needle"),
    [
        ({"client_fn": None}, ValueError, "exactly one of client_fn, client and app"),
        ({"client": _Numpy()}, ValueError, "exactly one of client_fn, client and app"),
        ({"client_fn": None, "client": object()}, TypeError, "client must be"),
        ({"client_fn": 42}, TypeError, "client_fn must be callable"),
        ({"client_fn": None, "app": _fn}, TypeError, "app must be a flwr_sdk.client.ClientApp"),
        ({"client_fn": None, "app": ClientApp()}, ValueError, "ClientApp with nothing to run"),
        ({"node_config": [("partition-id", 0)]}, TypeError, "node_config must be a mapping"),
        ({"node_config": {1: 0}}, TypeError, "node_config keys"),
        ({"node_config": {"data": [1, 2]}}, TypeError, "node_config['data']"),
        ({"transport": "grpc-adapter"}, ValueError, "unknown transport 'grpc-adapter'"),
        ({"transport": "GRPC-BIDI"}, ValueError, "unknown transport"),
        ({"transport": 3}, TypeError, "transport must be"),
        ({"grpc_max_message_length": 0}, ValueError, "grpc_max_message_length"),
        ({"grpc_max_message_length": -5}, ValueError, "grpc_max_message_length"),
        ({"grpc_max_message_length": 1.5}, TypeError, "grpc_max_message_length"),
        ({"grpc_max_message_length": True}, TypeError, "grpc_max_message_length"),
        ({"server_address": "127.0.0.1"}, ValueError, "server_address"),
        ({"server_address": "127.0.0.1:0"}, ValueError, "server_address"),
        ({"server_address": "127.0.0.1:70000"}, ValueError, "server_address"),
        ({"server_address": "127.0.0.1:http"}, ValueError, "server_address"),
        ({"server_address": "::1:8080"}, ValueError, "[::1]:8080"),
        ({"server_address": 8080}, TypeError, "server_address"),
        ({"insecure": "yes"}, TypeError, "insecure"),
        ({"root_certificates": 12}, TypeError, "root_certificates"),
        ({"root_certificates": "/does/not/exist.pem"}, ValueError, "root_certificates"),
        ({"root_certificates": b"not a pem"}, ValueError, "root_certificates"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"max_wait_time": -1.0}, ValueError, "max_wait_time"),
        ({"max_wait_time": "1"}, TypeError, "max_wait_time"),
        ({"authentication_keys": "keys"}, TypeError, "authentication_keys"),
        ({"transport": "rest", "server_address": "127.0.0.1:9093"}, ValueError, "server_address"),
        (
            {"transport": "rest", "server_address": "http://127.0.0.1:9093/prefix"},
            ValueError,
            "server_address",
        ),
    ],
)
def test_invalid_arguments(overrides: dict[str, Any], error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        validate(**_args(**overrides))
    assert needle in str(info.value)


def test_node_config_reaches_validated_config_as_a_copy() -> None:
    given = {"partition-id": 1, "num-partitions": 4, "name": "silo-b", "on": True}
    config = validate(**_args(node_config=given))
    given["partition-id"] = 9
    assert config.node_config == {
        "partition-id": 1,
        "num-partitions": 4,
        "name": "silo-b",
        "on": True,
    }


def test_insecure_true_with_root_certificates(ca_pem: bytes) -> None:
    with pytest.raises(ValueError, match="root_certificates"):
        validate(**_args(insecure=True, root_certificates=ca_pem))


def test_root_certificates_as_path_and_bytes(tmp_path: Path, ca_pem: bytes) -> None:
    path = tmp_path / "ca.pem"
    path.write_bytes(ca_pem)
    by_path = validate(**_args(root_certificates=str(path)))
    by_bytes = validate(**_args(root_certificates=ca_pem))
    assert by_path.settings.root_certificates == by_bytes.settings.root_certificates == ca_pem
    assert by_path.settings.insecure is False


def test_non_pem_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pem"
    path.write_bytes(b"\x00\x01 certainly not PEM")
    with pytest.raises(ValueError, match="root_certificates"):
        validate(**_args(root_certificates=str(path)))


def test_insecure_false_without_certificates_uses_system_store() -> None:
    config = validate(**_args(insecure=False))
    assert config.settings.insecure is False
    assert config.settings.root_certificates is None


@pytest.mark.parametrize("transport", [None, "grpc-bidi"])
def test_authentication_keys_refused_where_not_carried(transport: str | None) -> None:
    address = "127.0.0.1:9092"
    with pytest.raises(ValueError, match="authentication_keys cannot be used"):
        validate(**_args(transport=transport, server_address=address, authentication_keys=_keys()))


def test_authentication_keys_accepted_on_grpc_rere() -> None:
    keys = _keys()
    config = validate(**_args(transport="grpc-rere", authentication_keys=keys))
    assert config.settings.authentication_keys == keys


def test_authentication_keys_must_be_a_matching_ec_pair() -> None:
    private, _ = _keys()
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ValueError, match="does not belong"):
        validate(**_args(transport="grpc-rere", authentication_keys=(private, other)))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(TypeError, match="EllipticCurvePrivateKey"):
        validate(**_args(transport="grpc-rere", authentication_keys=(rsa_key, other)))
    with pytest.raises(TypeError, match="EllipticCurvePublicKey"):
        validate(**_args(transport="grpc-rere", authentication_keys=(private, private)))


@pytest.mark.parametrize(
    ("address", "overrides", "needle"),
    [
        ("http://127.0.0.1:9093", {"insecure": False}, "https://"),
        ("https://127.0.0.1:9093", {"insecure": True}, "https://"),
    ],
)
def test_rest_security_must_match_scheme(
    address: str, overrides: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        validate(**_args(transport="rest", server_address=address, **overrides))


def test_rest_http_with_root_certificates_is_refused(ca_pem: bytes) -> None:
    with pytest.raises(ValueError, match="https://"):
        validate(
            **_args(transport="rest", server_address="http://127.0.0.1:1", root_certificates=ca_pem)
        )


def test_start_client_is_keyword_only_and_validates_before_connecting() -> None:
    with pytest.raises(TypeError):
        start_client("127.0.0.1:8080", _fn)  # type: ignore[misc]
    # Nothing listens on port 1: a validation error must come first, without connecting.
    with pytest.raises(ValueError, match="exactly one"):
        start_client(server_address="127.0.0.1:1")


def test_public_api_names() -> None:
    for name in [
        "start_client",
        "start_client_async",
        "Client",
        "NumPyClient",
        "Context",
        "RecordSet",
        "ParametersRecord",
        "Array",
        "MetricsRecord",
        "ConfigsRecord",
        "Message",
        "Metadata",
        "Error",
        "Parameters",
        "FitIns",
        "FitRes",
        "EvaluateIns",
        "EvaluateRes",
        "GetParametersIns",
        "GetParametersRes",
        "GetPropertiesIns",
        "GetPropertiesRes",
        "Status",
        "Code",
        "ndarrays_to_parameters",
        "parameters_to_ndarrays",
    ]:
        assert hasattr(flwr_sdk, name), name


def test_start_client_and_its_async_twin_take_exactly_what_validate_checks() -> None:
    """Both pass ``locals()`` to validate(): their parameters must be validate's."""
    import inspect

    import flwr_sdk

    expected = list(inspect.signature(validate).parameters)
    for fn in (flwr_sdk.start_client, flwr_sdk.start_client_async):
        assert list(inspect.signature(fn).parameters) == expected, fn.__name__


@pytest.mark.parametrize("wire", ["1.12", "1.15"])
def test_authentication_keys_on_rest_need_a_line_with_node_auth_over_http(wire: str) -> None:
    address = "http://127.0.0.1:9093"
    with pytest.raises(ValueError, match="no node authentication over HTTP"):
        validate(
            **_args(
                transport="rest", server_address=address, authentication_keys=_keys(), wire=wire
            )
        )
    config = validate(
        **_args(transport="rest", server_address=address, authentication_keys=_keys(), wire="1.42")
    )
    assert config.settings.authentication_keys is not None and config.wire == "1.42"
