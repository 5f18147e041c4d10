"""torch.compile on qdev tensors: aot_eager and the default Inductor backend."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def fn(x, y):
    return torch.relu(x @ y + 1).sum(-1)


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_function_matches_eager(backend):
    x, y = torch.randn(8, 16, device="qdev"), torch.randn(16, 4, device="qdev")
    compiled = torch.compile(fn, backend=backend, fullgraph=True)
    out = compiled(x, y)
    assert out.device.type == "qdev"
    torch.testing.assert_close(out.cpu(), fn(x, y).cpu())


def test_inductor_module_with_backward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 1)).qdev()
    x = torch.randn(4, 8, device="qdev")
    eager = model(x)
    compiled = torch.compile(model)
    out = compiled(x)
    torch.testing.assert_close(out.cpu(), eager.cpu(), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert model[0].weight.grad.device.type == "qdev"


def test_dynamic_shapes_aot_eager():
    compiled = torch.compile(lambda t: (t * 2).cumsum(0), backend="aot_eager", dynamic=True)
    for n in (3, 5, 9):
        t = torch.arange(n, dtype=torch.float32, device="qdev")
        assert torch.equal(compiled(t).cpu(), (torch.arange(n, dtype=torch.float32) * 2).cumsum(0))


def test_device_interface_registered():
    from torch._dynamo.device_interface import get_interface_for_device

    iface = get_interface_for_device("qdev")
    assert iface.device_count() == 2
    assert iface.is_available()
    assert iface.Worker.get_device_properties(0).multi_processor_count >= 1


def test_fake_tensor_on_qdev():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        t = torch.empty(3, 4, device="qdev")
        u = t @ t.t()
    assert u.device == torch.device("qdev:0") and u.shape == (3, 3)
