"""Per-device random number generators of qdev (torch.cuda.random's API)."""
from __future__ import annotations

from typing import Any, Iterable

import torch

from .. import _C
from ._utils import _get_device_index

# One default generator per device, created by the runtime.
default_generators: tuple[torch.Generator, ...] = tuple(
    _C._get_default_generator(i) for i in range(_C._get_device_count())
)


def _generator(device: Any = "qdev") -> torch.Generator:
    index = _get_device_index(device, optional=True)
    if index < 0:  # not Python's negative indexing into the tuple (-1 would be the last device)
        raise RuntimeError(f"Device index must not be negative, but it is {index}")
    return default_generators[index]


def get_rng_state(device: Any = "qdev") -> torch.Tensor:
    """The generator state of a device as a ByteTensor (on the CPU)."""
    return _generator(device).get_state()


def get_rng_state_all() -> list[torch.Tensor]:
    return [g.get_state() for g in default_generators]


def set_rng_state(new_state: torch.Tensor, device: Any = "qdev") -> None:
    if not isinstance(new_state, torch.Tensor) or new_state.dtype != torch.uint8:
        raise TypeError("set_rng_state expects a torch.ByteTensor from get_rng_state")
    with torch.no_grad():
        state = new_state.detach().to("cpu").clone(memory_format=torch.contiguous_format)
    _generator(device).set_state(state)


def set_rng_state_all(new_states: Iterable[torch.Tensor]) -> None:
    for index, state in enumerate(new_states):
        set_rng_state(state, index)


def manual_seed(seed: int) -> None:
    """Seeds the current device's generator."""
    _generator(None).manual_seed(int(seed))


def manual_seed_all(seed: int) -> None:
    for g in default_generators:
        g.manual_seed(int(seed))


def seed() -> None:
    """Seeds the current device's generator with a non-deterministic number."""
    _generator(None).seed()


def seed_all() -> None:
    if not default_generators:
        return
    value = default_generators[0].seed()
    for g in default_generators[1:]:
        g.manual_seed(value)


def initial_seed() -> int:
    return _generator(None).initial_seed()
