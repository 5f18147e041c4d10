"""Builds torch_qdev's C++ libraries with CMake against the torch already installed.

    pip install --no-build-isolation -e .     (or without -e)

Options (environment):
    QDEV_BUILD_DIR     CMake build tree (default build/cmake-py<ver>-torch<ver>, kept
                       between builds so rebuilds are incremental)
    QDEV_BUILD_TESTS   0 skips the C++ test executables
    MAX_JOBS           parallel compile jobs (default: CPU count)
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise RuntimeError(
            "torch_qdev builds against the installed torch, which this build environment "
            "cannot see. Install torch first and build with `pip install --no-build-isolation .`"
        ) from exc
    return torch


def _cmake() -> str:
    found = shutil.which("cmake")
    if found:
        return found
    try:  # the `cmake` PyPI package
        import cmake

        return str(Path(cmake.CMAKE_BIN_DIR) / "cmake")
    except ImportError as exc:
        raise RuntimeError("CMake >= 3.18 is required (pip install cmake)") from exc


def default_build_dir() -> Path:
    torch = _torch()
    tag = f"py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__.split('+')[0]}"
    return Path(os.environ.get("QDEV_BUILD_DIR", ROOT / "build" / f"cmake-{tag}"))


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        torch = _torch()
        ext_path = Path(self.get_ext_fullpath(ext.name)).resolve()
        # An editable install runs the package from the source tree, so the
        # libraries go there; setuptools still expects _C at ext_path.
        editable = getattr(self, "editable_mode", False) or self.inplace
        pkg_dir = ROOT / "torch_qdev" if editable else ext_path.parent
        build_dir = default_build_dir()
        build_dir.mkdir(parents=True, exist_ok=True)
        cmake = _cmake()
        configure = [
            cmake, "-S", str(ROOT), "-B", str(build_dir),
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_INSTALL_PREFIX={pkg_dir}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DQDEV_BUILD_TESTS={'OFF' if os.environ.get('QDEV_BUILD_TESTS') == '0' else 'ON'}",
            f"-DQDEV_TORCH_DISTRIBUTED={'ON' if torch.distributed.is_available() else 'OFF'}",
        ]
        if not (build_dir / "CMakeCache.txt").exists() and shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        subprocess.check_call(configure)
        subprocess.check_call([cmake, "--build", str(build_dir), "-j", jobs])
        subprocess.check_call([cmake, "--install", str(build_dir)])
        built = pkg_dir / ext_path.name
        if built != ext_path:
            ext_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, ext_path)
        (pkg_dir / "_build_info.py").write_text(
            "# Written by setup.py: the torch this build was compiled against.\n"
            f"TORCH_VERSION = {torch.__version__!r}\n"
            f"BUILD_DIR = {str(build_dir)!r}\n"
        )


setup(
    ext_modules=[CMakeExtension("torch_qdev._C")],
    cmdclass={"build_ext": CMakeBuild},
)
