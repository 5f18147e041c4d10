"""Autograd on qdev tensors: gradients match the CPU and stay on the device."""
from __future__ import annotations

import pytest
import torch


def test_mlp_gradients_match_cpu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    x, target = torch.randn(10, 6), torch.randn(10, 2)
    loss = torch.nn.functional.mse_loss(model(x), target)
    loss.backward()
    cpu_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.qdev()
    loss_q = torch.nn.functional.mse_loss(model(x.qdev()), target.qdev())
    loss_q.backward()
    for p, g in zip(model.parameters(), cpu_grads):
        assert p.grad.device.type == "qdev"
        torch.testing.assert_close(p.grad.cpu(), g, rtol=1e-5, atol=1e-6)


def test_grad_through_views_and_in_place():
    x = torch.randn(4, 4, device="qdev", requires_grad=True)
    y = x * 1
    y[1:3].mul_(3)
    y.t().sum().backward()
    expected = torch.ones(4, 4)
    expected[1:3] = 3
    assert torch.equal(x.grad.cpu(), expected)


def test_autograd_grad_and_double_backward():
    x = torch.tensor([1.5, -2.0], device="qdev", requires_grad=True)
    (g,) = torch.autograd.grad((x ** 3).sum(), x, create_graph=True)
    torch.testing.assert_close(g.detach().cpu(), 3 * x.detach().cpu() ** 2)
    (gg,) = torch.autograd.grad(g.sum(), x)
    torch.testing.assert_close(gg.cpu(), 6 * x.detach().cpu())


def test_custom_function():
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return t * t

        @staticmethod
        def backward(ctx, grad):
            (t,) = ctx.saved_tensors
            return 2 * t * grad

    x = torch.randn(5, device="qdev", requires_grad=True)
    Square.apply(x).sum().backward()
    torch.testing.assert_close(x.grad.cpu(), 2 * x.detach().cpu())


def test_cross_device_graph():
    a = torch.randn(3, requires_grad=True)
    b = a.to("qdev:1")
    (b * 2).sum().backward()
    assert a.grad.device.type == "cpu" and torch.equal(a.grad, torch.full((3,), 2.0))


def test_in_place_on_leaf_is_refused():
    x = torch.ones(2, device="qdev", requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.add_(1)


def test_optimizer_step_on_qdev():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, device="qdev"))
    opt = torch.optim.AdamW([w], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
    assert w.device.type == "qdev"
    assert opt.state[w]["exp_avg"].device.type == "qdev"
