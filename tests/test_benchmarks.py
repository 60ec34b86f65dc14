"""The benchmark suite runs end to end (at toy size) and reports what the appendix reads."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_smoke_suite_prints_the_summary_and_writes_json(tmp_path):
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("SUMMARY device=")
    fields = dict(item.split("=", 1) for item in last.split()[1:])
    assert {"sweep_speedup", "sweep_speedup_xla_default", "lanczos_params", "total_s"} <= set(fields)
    data = json.loads(out.read_text())
    assert data["summary"] == {k: type(data["summary"][k])(v) for k, v in fields.items()}
    # the vmapped sweep computes the same numbers as the loop of single runs
    assert data["sweep"]["max_abs_diff"] <= 1e-12
    assert data["sweep"]["speedup"] > 0 and data["sweep"]["scaling"]
    # and so it does with XLA's own loop handling (measured in a process without dyncore's setting)
    assert data["sweep"]["xla_default"]["max_abs_diff"] <= 1e-12 and data["sweep"]["xla_default"]["speedup"] > 0
    # Lanczos agrees with dense eigh on the toy MLP
    (row,) = data["curvature"]
    assert row["rel_err"] is not None and row["rel_err"] < 1e-6


def test_committed_results_have_what_the_appendix_plots():
    files = sorted((ROOT / "benchmarks").glob("results-*.json"))
    assert files, "no committed benchmark results (run python benchmarks/run.py)"
    for f in files:
        data = json.loads(f.read_text())
        assert data["suite"] in ("full", "quick"), f"{f.name}: a smoke run is not a result"
        assert {"device", "sweep", "curvature", "book", "summary"} <= set(data)
        assert data["sweep"]["max_abs_diff"] <= 1e-12 and data["sweep"]["xla_default"]["max_abs_diff"] <= 1e-12
        assert all(fig["move_min_ms"] > 0 and fig["move_ms"] >= fig["move_min_ms"] for fig in data["book"]["figures"])
