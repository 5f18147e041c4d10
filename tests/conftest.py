"""Shared fixtures. ``import torch`` autoloads torch_qdev; importing it again is a no-op."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch

# Triton reads TRITON_INTERPRET when it decorates kernels, and torch.compile imports triton early
# (through Inductor): without a GPU the whole test process runs Triton's interpreter, so that
# test_triton_ops.py can check the CUDA target's kernels on CPU tensors whatever ran before it.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import torch_qdev  # noqa: F401,E402

QDEV = torch.device("qdev:0")


@pytest.fixture(autouse=True)
def _restore_device_and_stream():
    """Tests may switch device or stream; every test starts on qdev:0, default stream."""
    torch.qdev.set_device(0)
    yield
    for i in range(torch.qdev.device_count()):
        torch.accelerator.set_stream(torch.qdev.default_stream(i))
    torch.qdev.set_device(0)


def run_python(code: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (for process-wide settings: env, autoload, OOM)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


ISAS = torch_qdev._C._supported_cpu_isas()


@contextlib.contextmanager
def cpu_isa(isa: str):
    """Runs the block with the CPU kernels' ISA variant forced to ``isa``, then restores it."""
    previous = torch_qdev._C._get_cpu_isa()
    assert torch_qdev._C._set_cpu_isa(isa)
    try:
        yield
    finally:
        torch_qdev._C._set_cpu_isa(previous)


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test once per supported ISA variant, with that variant forced."""
    with cpu_isa(request.param):
        yield request.param


@contextlib.contextmanager
def internal_format(allow: bool = True):
    """Runs the block with ``torch.qdev.config.allow_internal_format`` set, then restores it."""
    previous = torch.qdev.config.allow_internal_format
    torch.qdev.config.allow_internal_format = allow
    try:
        yield
    finally:
        torch.qdev.config.allow_internal_format = previous
