"""TunedH2Connection: received frames have a cheap ``repr`` when h2 logs to its DummyLogger."""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame

from flwr_sdk.net.grpc_tuning import TunedH2Connection

HEADERS = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "x")]


class RecordingLogger:
    def __init__(self) -> None:
        self.traces: list[str] = []

    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    def trace(self, fmt: str, *args: Any, **kwargs: Any) -> None:
        self.traces.append(fmt % args)


class SeenFrames(TunedH2Connection):
    """Notes each received frame's class and ``repr`` as h2 gets it."""

    seen: list[tuple[type[Frame], str]]

    def _receive_frame(self, frame: Frame) -> list[Any]:
        events = super()._receive_frame(frame)
        self.seen = [*getattr(self, "seen", []), (frame.__class__, repr(frame))]
        return events


def exchange(server: H2Connection) -> list[str]:
    """A client request with a body, then a ping, received by ``server``; its event names."""
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    events = server.receive_data(client.data_to_send())
    client.send_headers(1, HEADERS)
    client.send_data(1, b"\xab" * 100, end_stream=True)
    client.ping(b"12345678")
    events += server.receive_data(client.data_to_send())
    return [type(event).__name__ for event in events]


def test_frames_are_silent_with_h2s_dummy_logger_and_handled_as_usual() -> None:
    stock_events = exchange(H2Connection(H2Configuration(client_side=False)))
    tuned = SeenFrames(H2Configuration(client_side=False))
    assert exchange(tuned) == stock_events
    assert "RequestReceived" in stock_events and "PingReceived" in stock_events
    classes = {
        cls.__mro__[1] if cls.__name__.startswith("_Silent") else cls for cls, _ in tuned.seen
    }
    assert {HeadersFrame, SettingsFrame} <= classes
    for cls, text in tuned.seen:
        assert cls.__name__.startswith("_Silent"), cls
        assert "flags" not in text and "hex" not in text
    headers = [text for cls, text in tuned.seen if issubclass(cls, HeadersFrame)]
    assert headers == ["HeadersFrame(stream_id=1)"]
    assert any(issubclass(cls, DataFrame) for cls, _ in tuned.seen)


def test_a_real_logger_still_gets_full_frame_reprs_except_data_bodies() -> None:
    logger = RecordingLogger()
    tuned = TunedH2Connection(H2Configuration(client_side=False, logger=logger))  # type: ignore[arg-type]
    exchange(tuned)
    headers = [t for t in logger.traces if t.startswith("Received frame: HeadersFrame")]
    assert headers and "flags=" in headers[0]
    data = [t for t in logger.traces if "DataFrame" in t]
    assert data and "<100 bytes>" in data[0] and "hex" not in data[0]


def test_quiet_data_frames_off_keeps_every_frame_stock() -> None:
    tuned = SeenFrames(H2Configuration(client_side=False), quiet_data_frames=False)
    exchange(tuned)
    assert tuned.seen and all(cls.__module__ == "hyperframe.frame" for cls, _ in tuned.seen)
