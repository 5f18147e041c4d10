"""The bad-input fuzzer's fixed-seed CI slice (tests/fuzz/; the long run is tools/fuzz.py).

Every generated case (a valid call of a public op, layer or quantize_ config with one
argument made wrong) must end in a clean Python exception or in the plain-PyTorch
reference's result; the child processes that run them must not crash or hang, and after
each burst of errors the device must compute right with its memory back to the start."""
from __future__ import annotations

import pytest

from fuzz import cases, runner

SLICE = range(0, 600)  # ~40 s on 2 cores


def test_fuzz_slice_finds_nothing():
    results = runner.run(SLICE, batch=150, jobs=2)
    counts = runner.summary(results)
    bad = [r for r in results if r["verdict"] in runner.FAILURES]
    report = "\n".join(f"{r['verdict']} seed={r.get('seed')} {r.get('desc', '')}: {r['detail']}" for r in bad[:20])
    assert not bad, f"{counts}\n{report}"
    # The slice exercises both outcomes: refusals and accepted calls checked against the reference.
    assert counts["error"] > 100 and counts["ok"] > 50, counts


def test_classifier_tells_clean_from_unclear():
    assert runner.classify_exception(RuntimeError("npu_quant_matmul: x1 must be ..."))[0] == "error"
    assert runner.classify_exception(RuntimeError("INTERNAL ASSERT FAILED at foo.cpp"))[0] == "unclear"
    assert runner.classify_exception(ZeroDivisionError("integer division or modulo by zero"))[0] == "unclear"
    assert runner.classify_exception(IndexError("tuple index out of range"))[0] == "unclear"
    assert runner.classify_exception(RuntimeError("Unimplemented scalar type"))[0] == "unclear"


def test_runner_pins_a_crash_and_a_hang_to_its_case(monkeypatch):
    """A child that dies (or hangs) on one seed: the batch is re-run case by case."""
    monkeypatch.setenv("QDEV_FUZZ_SELFTEST", "crash=3,hang=5")
    results = runner.run_batch([1, 3, 5], per_case_timeout=1.0, start_timeout=15.0)
    by_seed = {r["seed"]: r["verdict"] for r in results if r.get("seed") is not None}
    assert by_seed[3] == "crash" and by_seed[5] == "hang", results
    assert by_seed[1] not in ("crash", "hang"), results


def test_cases_are_deterministic():
    a, b = cases.make_case(1234), cases.make_case(1234)
    assert a.desc == b.desc and a.family == b.family
