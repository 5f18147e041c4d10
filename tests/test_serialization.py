"""torch.save / torch.load, map_location, state_dict, deepcopy and pickling of qdev tensors."""
from __future__ import annotations

import copy
import io
import pickle

import torch


def _round_trip(obj, **load_kwargs):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, **load_kwargs)


def test_tensor_keeps_device_and_values():
    x = torch.randn(3, 4, device="qdev:1")
    y = _round_trip(x)
    assert y.device == torch.device("qdev:1")
    assert torch.equal(x.cpu(), y.cpu())


def test_map_location():
    x = torch.randn(5, device="qdev:0")
    assert _round_trip(x, map_location="cpu").device.type == "cpu"
    assert _round_trip(x, map_location="qdev:1").device == torch.device("qdev:1")
    assert _round_trip(x, map_location=torch.device("qdev", 1)).device.index == 1
    assert _round_trip(torch.ones(2), map_location="qdev").device.type == "qdev"
    assert _round_trip(x, map_location={"qdev:0": "qdev:1"}).device.index == 1


def test_views_share_storage_after_load():
    base = torch.arange(10.0, device="qdev")
    view = base[2:5]
    b2, v2 = _round_trip((base, view))
    v2.fill_(-1)
    assert b2[2:5].eq(-1).all()


def test_module_state_dict():
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).qdev()
    sd = _round_trip(m.state_dict())
    assert all(v.device.type == "qdev" for v in sd.values())
    m2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).qdev()
    m2.load_state_dict(sd)
    x = torch.randn(2, 4, device="qdev")
    m.eval()
    m2.eval()
    assert torch.equal(m(x).cpu(), m2(x).cpu())


def test_deepcopy_and_pickle():
    x = torch.randn(6, device="qdev", requires_grad=True)
    y = copy.deepcopy(x)
    assert y.device == x.device and y.requires_grad and y.data_ptr() != x.data_ptr()
    assert torch.equal(x.detach().cpu(), y.detach().cpu())
    z = pickle.loads(pickle.dumps(torch.arange(3, device="qdev:1")))
    assert z.device == torch.device("qdev:1") and torch.equal(z.cpu(), torch.arange(3))


def test_save_file_with_weights_only(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"w": torch.randn(2, 2, device="qdev")}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["w"].device.type == "qdev"
