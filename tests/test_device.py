"""Registration of the qdev device and the torch.qdev device-management API."""
from __future__ import annotations

import threading

import pytest
import torch

from conftest import run_python


def test_privateuse1_is_named_qdev():
    assert torch._C._get_privateuse1_backend_name() == "qdev"
    assert torch.get_device_module("qdev") is torch.qdev
    assert torch.accelerator.current_accelerator() == torch.device("qdev")
    assert torch.accelerator.is_available()


def test_device_count_and_availability():
    assert torch.qdev.is_available()
    assert torch.qdev.device_count() == 2  # QDEV_DEVICE_COUNT default
    assert torch.accelerator.device_count() == 2


def test_set_device_and_current_device():
    torch.qdev.set_device(1)
    assert torch.qdev.current_device() == 1
    assert torch.accelerator.current_device_index() == 1
    assert torch.empty(1, device="qdev").device == torch.device("qdev:1")
    torch.qdev.set_device("qdev:0")
    assert torch.qdev.current_device() == 0
    torch.qdev.set_device(torch.device("qdev", 1))
    assert torch.qdev.current_device() == 1


def test_device_context_manager_restores():
    with torch.qdev.device(1):
        assert torch.qdev.current_device() == 1
        x = torch.zeros(2, device="qdev")
        with torch.qdev.device(0):
            assert torch.qdev.current_device() == 0
        assert torch.qdev.current_device() == 1
    assert torch.qdev.current_device() == 0
    assert x.device.index == 1
    with torch.qdev.device(None):  # no-op like torch.cuda.device(None)
        assert torch.qdev.current_device() == 0
    with torch.device("qdev:1"):
        assert torch.empty(3).device == torch.device("qdev:1")


def test_device_of():
    y = torch.ones(1, device="qdev:1")
    with torch.qdev.device_of(y):
        assert torch.qdev.current_device() == 1
    with torch.qdev.device_of(torch.ones(1)):
        assert torch.qdev.current_device() == 0


def test_current_device_is_thread_local():
    torch.qdev.set_device(1)
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.qdev.current_device()))
    t.start()
    t.join()
    assert seen == [0]


def test_properties_name_capability():
    props = torch.qdev.get_device_properties(0)
    assert props.total_memory > 0
    assert props.multi_processor_count >= 1
    assert torch.qdev.get_device_name() == props.name
    assert "qdev" in torch.qdev.get_device_name(1)
    assert torch.qdev.get_device_capability() == (props.major, props.minor)
    assert torch.qdev.is_bf16_supported()
    assert torch.qdev.mem_get_info(0)[1] == props.total_memory
    assert "total_memory" in repr(props)


def test_tensor_module_storage_methods():
    x = torch.arange(6.0)
    q = x.qdev()
    assert q.is_qdev and not x.is_qdev
    assert q.device == torch.device("qdev:0")
    assert x.qdev(1).device == torch.device("qdev:1")
    assert q.type() == "torch.qdev.FloatTensor"
    m = torch.nn.Linear(3, 2).qdev()
    assert all(p.is_qdev for p in m.parameters())
    s = x.untyped_storage().qdev()
    assert s.device.type == "qdev" and s.is_qdev
    assert q.get_device() == 0


def test_init_is_lazy_and_idempotent():
    torch.qdev.init()
    torch.qdev.init()
    assert torch.qdev.is_initialized()


def test_register_is_idempotent():
    import torch_qdev

    torch_qdev._register()
    torch_qdev._autoload()
    assert torch.qdev.device_count() == 2


def test_other_backend_name_is_refused():
    with pytest.raises(RuntimeError, match="already been set"):
        torch.utils.rename_privateuse1_backend("npu")


def test_import_torch_autoloads_backend():
    r = run_python("import torch; print(torch.randn(2, device='qdev').device)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "qdev:0"


def test_autoload_can_be_disabled():
    r = run_python(
        "import torch, sys; print(torch._C._get_privateuse1_backend_name(), 'torch_qdev' in sys.modules)",
        env={"TORCH_DEVICE_BACKEND_AUTOLOAD": "0"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["privateuseone", "False"]


def test_device_count_from_environment():
    r = run_python("import torch; print(torch.qdev.device_count()); torch.ones(1, device='qdev:3')",
                   env={"QDEV_DEVICE_COUNT": "4"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "4"


def test_forked_child_cannot_reinitialize():
    r = run_python("""
        import os, torch
        torch.ones(1, device='qdev')
        pid = os.fork()
        if pid == 0:
            try:
                torch.qdev._lazy_init()
                os._exit(1)
            except RuntimeError as e:
                os._exit(0 if 'forked subprocess' in str(e) else 2)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0"
