"""Version of torch_qdev and the torch it was built against."""
from __future__ import annotations

import torch

__version__ = "0.1.0"


def _minor(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    return int(parts[0]), int(parts[1])


def check_torch_version() -> None:
    """Refuses a torch of another minor than the build's: the C++ ABI differs."""
    try:
        from ._build_info import TORCH_VERSION
    except ImportError:  # built without setup.py (plain CMake): nothing recorded
        return
    if _minor(TORCH_VERSION) != _minor(torch.__version__):
        raise ImportError(
            f"torch_qdev was built against torch {TORCH_VERSION} but torch {torch.__version__} "
            "is installed; rebuild it with `pip install --no-build-isolation -e .`"
        )
