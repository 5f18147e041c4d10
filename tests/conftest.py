"""Shared fixtures. ``import torch`` autoloads torch_qdev; importing it again is a no-op."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import torch_qdev  # noqa: F401

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
