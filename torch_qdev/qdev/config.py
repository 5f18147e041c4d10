"""torch.qdev.config: backend switches (torch_npu's ``torch.npu.config``)."""
from __future__ import annotations


class _Config:
    """``allow_internal_format``: whether npu_format_cast may produce internal
    (e.g. FRACTAL_NZ) formats; when False, casts keep the base format."""

    __slots__ = ("_allow_internal_format",)

    def __init__(self) -> None:
        self._allow_internal_format = True

    @property
    def allow_internal_format(self) -> bool:
        return self._allow_internal_format

    @allow_internal_format.setter
    def allow_internal_format(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"allow_internal_format must be a bool, got {type(value).__name__}")
        self._allow_internal_format = value
        from .. import _C

        _C._set_allow_internal_format(value)

    def __repr__(self) -> str:
        return f"torch.qdev.config(allow_internal_format={self._allow_internal_format})"


config = _Config()
