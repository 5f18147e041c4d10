"""Runs fuzz cases in child processes.

The parent sends a batch of seeds to a child (``python -m fuzz.runner --child``), which
prints one JSON verdict per case as it finishes it, then a health line: after the burst
of errors the device must still compute right and ``torch.qdev.memory_allocated()`` must
be back where it started. A child that dies or outlives its timeout leaves the seeds
without a verdict; those are run again one per child, which pins the crash or hang on its
case.

Verdicts: ``error`` (a clean Python exception), ``ok`` (accepted, equal to the reference),
``wrong`` (accepted, but different from the reference or refused by its contract),
``unclear`` (an exception that is not a clean refusal: an internal assert, a Python-level
crash such as ZeroDivisionError, a message naming no argument), ``crash``, ``hang``,
``unhealthy`` (the device computes wrong or leaks memory after the batch).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Iterable

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLEAN_TYPES = ("RuntimeError", "ValueError", "TypeError", "NotImplementedError", "IndexError", "OverflowError",
               "OutOfMemoryError")
# Messages that are not a refusal of an argument: internal asserts, Python-level crashes of wrappers,
# and generic errors from deep inside (they name no argument of the call).
UNCLEAR = ("INTERNAL ASSERT", "Unimplemented scalar type", "tuple index out of range", "list index out of range",
           "division by zero", "'NoneType' object", "unsupported operand type", "not supported between instances",
           "std::bad_alloc", "object has no attribute")


def classify_exception(e: BaseException) -> tuple[str, str]:
    name = type(e).__name__
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    detail = f"{name}: {msg[:300]}"
    if name not in CLEAN_TYPES and not any(isinstance(e, t) for t in (RuntimeError, ValueError, TypeError)):
        return "unclear", detail
    if any(p in str(e) for p in UNCLEAR):
        return "unclear", detail
    if not msg:
        return "unclear", detail
    return "error", detail


def run_case(seed: int) -> dict:
    import torch
    from fuzz.cases import Invalid, make_case

    try:
        case = make_case(seed)
    except Exception as e:  # a bug of the generator itself, reported as such
        return {"seed": seed, "verdict": "generator", "detail": f"{type(e).__name__}: {e}"}
    out = {"seed": seed, "family": case.family, "desc": case.desc}
    try:
        result = case.run()
    except AssertionError as e:  # an assertion inside run(): an invariant of the call failed
        out["verdict"], out["detail"] = "wrong", f"{e}"
        return out
    except BaseException as e:  # noqa: BLE001 - everything the op raises is classified
        out["verdict"], out["detail"] = classify_exception(e)
        return out
    try:
        expected = case.ref()
    except Invalid as e:
        out["verdict"], out["detail"] = "wrong", f"accepted arguments the reference refuses ({e})"
        return out
    except Exception as e:  # noqa: BLE001
        out["verdict"], out["detail"] = "generator", f"reference failed: {type(e).__name__}: {e}"
        return out
    try:
        case.compare(result, expected)
    except AssertionError as e:
        out["verdict"], out["detail"] = "wrong", f"result differs from the reference: {str(e)[:300]}"
        return out
    except Exception as e:  # noqa: BLE001 - a result the comparison cannot even read
        out["verdict"], out["detail"] = "wrong", f"unreadable result: {type(e).__name__}: {str(e)[:300]}"
        return out
    del result, expected, torch
    out["verdict"] = "ok"
    return out


def health(start: dict) -> dict:
    """The device still computes right, and no device memory leaked."""
    import gc

    import torch

    gc.collect()
    problems = []
    for d, before in start.items():
        now = torch.qdev.memory_allocated(d)
        if now != before:
            problems.append(f"memory_allocated(qdev:{d}) {before} -> {now}")
    a = torch.randn(33, 65)
    b = torch.randn(65, 17)
    for d in start:
        got = (a.to(f"qdev:{d}") @ b.to(f"qdev:{d}")).cpu()
        if not torch.allclose(got, a @ b, rtol=1e-5, atol=1e-5):
            problems.append(f"qdev:{d} matmul wrong after the batch")
    import torch_qdev
    x1 = torch.randint(-128, 128, (5, 64), dtype=torch.int8)
    x2 = torch.randint(-128, 128, (64, 16), dtype=torch.int8)
    s = torch.ones(16)
    want = torch_qdev.npu_quant_matmul(x1, x2, s, output_dtype=torch.int32)
    got = torch_qdev.npu_quant_matmul(x1.qdev(), x2.qdev(), s.qdev(), output_dtype=torch.int32).cpu()
    if not torch.equal(got, want) or not torch.equal(want, (x1.int() @ x2.int())):
        problems.append("npu_quant_matmul wrong after the batch")
    return {"verdict": "unhealthy" if problems else "healthy", "detail": "; ".join(problems)}


def child_main(seeds: list[int]) -> None:
    import resource

    # Huge expanded inputs must fail to allocate, not take the machine's memory.
    limit = int(os.environ.get("QDEV_FUZZ_AS_LIMIT", str(3 << 30)))  # the machine rule: < 3 GiB a process
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import gc
    import warnings

    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    start = {d: torch.qdev.memory_allocated(d) for d in range(torch.qdev.device_count())}
    selftest = dict(kv.split("=") for kv in os.environ.get("QDEV_FUZZ_SELFTEST", "").split(",") if kv)
    for seed in seeds:
        t0 = time.perf_counter()
        if str(seed) == selftest.get("crash"):  # the runner's own test: a case that kills its process
            os.abort()
        if str(seed) == selftest.get("hang"):
            time.sleep(3600)
        r = run_case(seed)
        r["ms"] = round(1000 * (time.perf_counter() - t0), 1)
        print(json.dumps(r), flush=True)
    print(json.dumps({"health": health(start)}), flush=True)


def _spawn(seeds: list[int], timeout: float):
    env = dict(os.environ)
    env["PYTHONPATH"] = TESTS_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("QDEV_MEMORY_LIMIT", "2G")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "fuzz.runner", "--child"] + [str(s) for s in seeds]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=TESTS_DIR)
        return p.returncode, p.stdout, p.stderr, False
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, "", True


def _parse(stdout: str):
    results, healthy = {}, None
    for line in stdout.splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "health" in r:
            healthy = r["health"]
        elif "seed" in r:
            results[r["seed"]] = r
    return results, healthy


def run_batch(seeds: list[int], per_case_timeout: float = 20.0, start_timeout: float = 60.0) -> list[dict]:
    """start_timeout covers the child's start (importing torch on a loaded machine)."""
    rc, stdout, stderr, timed_out = _spawn(seeds, start_timeout + per_case_timeout * len(seeds) / 4)
    results, health_line = _parse(stdout)
    out = [results[s] for s in seeds if s in results]
    missing = [s for s in seeds if s not in results]
    if health_line is not None and health_line["verdict"] != "healthy":
        out.append({"seed": None, "verdict": "unhealthy", "detail": health_line["detail"],
                    "desc": f"after batch {seeds[0]}..{seeds[-1]}"})
    if not missing and rc not in (0, None):
        out.append({"seed": None, "verdict": "crash", "detail": f"child exit {rc} after all cases: {stderr[-500:]}",
                    "desc": f"batch {seeds[0]}..{seeds[-1]}"})
    # Pin crashes and hangs: every seed without a verdict runs alone.
    for s in missing:
        rc1, stdout1, stderr1, to1 = _spawn([s], start_timeout + per_case_timeout)
        r1, _ = _parse(stdout1)
        if s in r1:
            out.append(r1[s])
        elif to1:
            out.append({"seed": s, "verdict": "hang", "detail": f"no verdict within {start_timeout + per_case_timeout:.0f} s",
                        "desc": _desc(s)})
        else:
            out.append({"seed": s, "verdict": "crash", "detail": f"exit {rc1}: {stderr1[-500:]}", "desc": _desc(s)})
    return out


def _desc(seed: int) -> str:
    try:
        sys.path.insert(0, TESTS_DIR)
        from fuzz.cases import make_case
        return make_case(seed).desc
    except Exception as e:  # noqa: BLE001
        return f"(description failed: {e})"


def run(seeds: Iterable[int], batch: int = 100, jobs: int = 1, log=None) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    seeds = list(seeds)
    batches = [seeds[i:i + batch] for i in range(0, len(seeds), batch)]
    results: list[dict] = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for rs in pool.map(run_batch, batches):
            results.extend(rs)
            if log:
                log(rs)
    return results


def summary(results: list[dict]) -> Counter:
    return Counter(r["verdict"] for r in results)


FAILURES = ("wrong", "unclear", "crash", "hang", "unhealthy", "generator")


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0, help="first seed; cases use seeds seed..seed+cases-1")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--show", type=int, default=40, help="failures to print")
    args = ap.parse_args(argv)
    t0 = time.time()
    done = [0]

    def log(rs):
        done[0] += len([r for r in rs if r.get("seed") is not None])
        print(f"[fuzz] {done[0]}/{args.cases} cases, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)

    results = run(range(args.seed, args.seed + args.cases), args.batch, args.jobs, log)
    bad = [r for r in results if r["verdict"] in FAILURES]
    for r in bad[: args.show]:
        print(f"{r['verdict']:9s} seed={r.get('seed')} {r.get('family', '')} {r.get('desc', '')}\n          {r['detail']}")
    c = summary(results)
    print(f"[fuzz] {args.cases} cases in {time.time() - t0:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main([int(s) for s in sys.argv[2:]])
    else:
        sys.exit(main())
