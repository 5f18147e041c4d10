"""Per-device generators: seeding, state, explicit generators, every random op."""
from __future__ import annotations

import pytest
import torch


def test_manual_seed_makes_random_ops_reproducible():
    def draw():
        return [torch.randn(8, device="qdev"), torch.rand(8, device="qdev"),
                torch.randint(0, 100, (8,), device="qdev"), torch.randperm(10, device="qdev"),
                torch.empty(8, device="qdev").bernoulli_(0.5),
                torch.multinomial(torch.ones(6, device="qdev"), 3),
                torch.normal(torch.zeros(4, device="qdev"), 1.0),
                torch.nn.functional.dropout(torch.ones(16, device="qdev"), 0.5)]

    torch.qdev.manual_seed(123)
    a = draw()
    torch.qdev.manual_seed(123)
    b = draw()
    for x, y in zip(a, b):
        assert x.device.type == "qdev"
        assert torch.equal(x, y)


def test_qdev_generator_is_independent_of_cpu_generator():
    torch.qdev.manual_seed(7)
    a = torch.randn(5, device="qdev")
    torch.qdev.manual_seed(7)
    torch.randn(100)  # consuming the CPU generator must not change qdev draws
    b = torch.randn(5, device="qdev")
    assert torch.equal(a, b)


def test_devices_have_their_own_generators():
    torch.qdev.manual_seed_all(5)
    a0 = torch.randn(4, device="qdev:0")
    a1 = torch.randn(4, device="qdev:1")
    assert torch.equal(a0.cpu(), a1.cpu())  # same seed, separate streams of numbers
    torch.qdev.set_device(1)
    torch.qdev.manual_seed(99)
    assert torch.qdev.initial_seed() == 99
    torch.qdev.set_device(0)
    assert torch.qdev.initial_seed() == 5
    assert len(torch.qdev.default_generators) == 2
    assert torch.qdev.default_generators[1].device == torch.device("qdev:1")


def test_torch_manual_seed_seeds_qdev():
    torch.manual_seed(42)
    a = torch.randn(3, device="qdev:1")
    torch.manual_seed(42)
    b = torch.randn(3, device="qdev:1")
    assert torch.equal(a, b)
    assert torch.qdev.initial_seed() == 42


def test_rng_state_round_trip():
    state = torch.qdev.get_rng_state()
    assert state.dtype == torch.uint8 and state.device.type == "cpu"
    a = torch.rand(6, device="qdev")
    torch.qdev.set_rng_state(state)
    b = torch.rand(6, device="qdev")
    assert torch.equal(a, b)
    states = torch.qdev.get_rng_state_all()
    assert len(states) == 2
    x = torch.rand(3, device="qdev:1")
    torch.qdev.set_rng_state_all(states)
    y = torch.rand(3, device="qdev:1")
    assert torch.equal(x, y)
    with pytest.raises(TypeError):
        torch.qdev.set_rng_state(torch.zeros(3))


def test_explicit_qdev_generator():
    g = torch.Generator(device="qdev")
    assert g.device == torch.device("qdev:0")
    g.manual_seed(11)
    a = torch.randn(5, device="qdev", generator=g)
    g.manual_seed(11)
    b = torch.randn(5, device="qdev", generator=g)
    assert torch.equal(a, b)
    g.manual_seed(11)
    c = torch.empty(5, device="qdev").uniform_(generator=g)
    assert c.device.type == "qdev"
    g2 = torch.Generator(device="qdev:1").manual_seed(3)
    s = g2.get_state()
    p1 = torch.randperm(20, device="qdev:1", generator=g2)
    g2.set_state(s)
    p2 = torch.randperm(20, device="qdev:1", generator=g2)
    assert torch.equal(p1, p2)


def test_seed_changes_initial_seed():
    torch.qdev.seed()
    s1 = torch.qdev.initial_seed()
    torch.qdev.seed_all()
    assert torch.qdev.default_generators[0].initial_seed() == torch.qdev.default_generators[1].initial_seed()
    assert isinstance(s1, int)


def test_fork_rng_restores_qdev_state():
    torch.qdev.manual_seed(1)
    with torch.random.fork_rng(devices=[0], device_type="qdev"):
        torch.randn(10, device="qdev")
    a = torch.randn(3, device="qdev")
    torch.qdev.manual_seed(1)
    b = torch.randn(3, device="qdev")
    assert torch.equal(a, b)


@pytest.mark.parametrize("op", [
    lambda t, g: t.normal_(0, 1, generator=g),
    lambda t, g: t.uniform_(-1, 1, generator=g),
    lambda t, g: t.random_(0, 10, generator=g),
    lambda t, g: t.exponential_(generator=g),
    lambda t, g: t.geometric_(0.3, generator=g),
    lambda t, g: t.log_normal_(generator=g),
    lambda t, g: t.cauchy_(generator=g),
    lambda t, g: t.bernoulli_(0.3, generator=g),
])
def test_in_place_random_ops_follow_generator(op):
    g = torch.Generator(device="qdev").manual_seed(2024)
    a = op(torch.empty(64, device="qdev"), g)
    g.manual_seed(2024)
    b = op(torch.empty(64, device="qdev"), g)
    assert a.device.type == "qdev" and torch.equal(a, b)
    assert torch.isfinite(a).all() or op is None


def test_random_values_have_expected_statistics():
    torch.qdev.manual_seed(0)
    x = torch.randn(200_000, device="qdev")
    assert abs(x.mean().item()) < 0.02
    assert abs(x.std().item() - 1) < 0.02
    u = torch.rand(200_000, device="qdev")
    assert 0 <= u.min().item() and u.max().item() < 1
