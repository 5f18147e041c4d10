"""qdev streams and events: torch.Stream / torch.Event with torch.cuda's API."""
from __future__ import annotations

from typing import Any

import torch

from .. import _C
from ._utils import _get_device_index


class Stream(torch.Stream):
    """An ordered queue of work on a qdev device.

    ``priority`` 0 is normal and -1 high (``Stream.priority_range()``); new
    streams come from per-device pools, as in CUDA.
    """

    def __new__(cls, device: Any = None, priority: int = 0, **kwargs: Any) -> "Stream":
        if kwargs:  # wrap an existing stream: stream_id, device_index, device_type
            if "stream_id" in kwargs:
                _C._stream_priority(int(kwargs["stream_id"]))  # refuses ids no qdev stream has
            if "device_index" in kwargs:
                _C._check_device_index(int(kwargs["device_index"]))
            return super().__new__(cls, **kwargs)
        index = _get_device_index(device, optional=True)
        return super().__new__(cls, device=torch.device("qdev", index), priority=priority)

    @property
    def priority(self) -> int:
        return _C._stream_priority(self.stream_id)

    @staticmethod
    def priority_range() -> tuple[int, int]:
        return _C._stream_priority_range()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, torch.Stream) and super().__eq__(other)

    def __hash__(self) -> int:
        return hash((self.stream_id, self.device_index, self.device_type))

    def __repr__(self) -> str:
        return f"<torch.qdev.Stream device=qdev:{self.device_index} stream_id={self.stream_id}>"


class _QdevEventType(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, torch.Event) and obj.device.type == "qdev"


class Event(metaclass=_QdevEventType):
    """A marker in a qdev stream; ``elapsed_time`` needs ``enable_timing=True``.

    Returns a plain ``torch.Event`` on the qdev device (torch's event methods
    accept only that exact type); ``isinstance(e, torch.qdev.Event)`` holds for
    every qdev event.
    """

    def __new__(cls, enable_timing: bool = False, blocking: bool = False,
                interprocess: bool = False, device: Any = None) -> torch.Event:
        if interprocess:
            raise NotImplementedError("qdev events cannot be shared between processes")
        index = _get_device_index(device, optional=True)
        event = torch.Event(torch.device("qdev", index), enable_timing=enable_timing,
                            blocking=blocking)
        if device is not None:
            # torch.Event keeps only the device type until its first record, so a stream of
            # another device would be accepted then: a first record on the asked device's
            # current stream binds the event to it (later records are checked against it).
            event.record(torch._C._accelerator_getStream(index))
        return event


def _wrap(s: torch.Stream) -> Stream:
    return Stream(stream_id=s.stream_id, device_index=s.device_index, device_type=s.device_type)


def current_stream(device: Any = None) -> Stream:
    from . import _lazy_init

    _lazy_init()
    return _wrap(torch._C._accelerator_getStream(_get_device_index(device, optional=True)))


def default_stream(device: Any = None) -> Stream:
    current = current_stream(device)
    return Stream(stream_id=0, device_index=current.device_index, device_type=current.device_type)


def set_stream(stream: torch.Stream) -> None:
    """Makes ``stream`` current on its device, and its device current, like torch.cuda.set_stream."""
    if stream is None:
        return
    if stream.device.type != "qdev":
        raise ValueError(f"Expected a qdev stream, but got a stream on {stream.device}")
    torch.accelerator.set_stream(stream)


class StreamContext:
    """Selects a stream (and its device) for a ``with`` block, then restores both."""

    def __init__(self, stream: torch.Stream | None):
        self.stream = stream
        self._prev_device = -1
        self._prev_streams: list[torch.Stream] = []

    def __enter__(self) -> torch.Stream | None:
        if self.stream is None:
            return None
        self._prev_device = _C._get_device()
        self._prev_streams = [torch._C._accelerator_getStream(self._prev_device)]
        if self.stream.device_index != self._prev_device:
            self._prev_streams.append(torch._C._accelerator_getStream(self.stream.device_index))
        set_stream(self.stream)
        return self.stream

    def __exit__(self, *args: Any) -> bool:
        if self.stream is None:
            return False
        for s in reversed(self._prev_streams):
            torch.accelerator.set_stream(s)
        _C._set_device(self._prev_device)
        return False


def stream(stream: torch.Stream | None) -> StreamContext:
    """``with torch.qdev.stream(s):`` runs the block with ``s`` as the current stream."""
    return StreamContext(stream)
