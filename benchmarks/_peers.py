"""Peers the benchmarks share that are not torch layers (see torch_qdev.quantization.torch_peers
for PyTorch's own quantized linears)."""
from __future__ import annotations

from typing import Callable, Optional

import torch


def ort_matmul_nbits(w_nk: torch.Tensor, m: int, block: int = 32,
                     threads: Optional[int] = None) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """onnxruntime's MatMulNBits (4-bit, symmetric blocks, accuracy_level 4 = int8 activations)
    for y = x @ w_nk^T with x (m, K) float32; None when onnxruntime/onnx are not installed."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    n, k = w_nk.shape
    blocks = w_nk.float().reshape(n, k // block, block)
    scale = blocks.abs().amax(-1) / 7
    q = torch.round(blocks / scale[..., None]).clamp(-8, 7).to(torch.int64) + 8
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).to(torch.uint8).numpy()
    node = helper.make_node("MatMulNBits", ["x", "w", "s"], ["y"], domain="com.microsoft", K=k, N=n, bits=4,
                            block_size=block, accuracy_level=4)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [helper.make_tensor("w", TensorProto.UINT8, packed.shape, packed.tobytes(), raw=True),
         helper.make_tensor("s", TensorProto.FLOAT, [n * (k // block)], scale.reshape(-1).numpy().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
