"""The benchmark suite runs end to end (at toy size) and reports what the appendix reads."""

import importlib.util
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

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
        assert {"device", "sweep", "curvature", "summary"} <= set(data)
        # the book's targets are for a CPU; elsewhere the notebooks may be skipped, with the reason
        assert "book" in data or (data["device"]["platform"] != "cpu" and data["book_skipped"]), f.name
        assert data["sweep"]["max_abs_diff"] <= 1e-12 and data["sweep"]["xla_default"]["max_abs_diff"] <= 1e-12
        figures = data.get("book", {}).get("figures", [])
        assert all(fig["move_min_ms"] > 0 and fig["move_ms"] >= fig["move_min_ms"] for fig in figures)


def _load_run_module():
    spec = importlib.util.spec_from_file_location("benchmarks_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_the_notebook_toolchain_the_rest_is_measured(tmp_path, monkeypatch):
    """A GPU machine may have JAX but not Jupyter: the notebook benchmarks are skipped, with the reason."""
    run = _load_run_module()
    assert run._missing_notebook_toolchain() is None  # this environment has the book's toolchain
    find_spec = importlib.util.find_spec
    hidden = lambda name, *a: None if name == "nbclient" else find_spec(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hidden)
    assert run._missing_notebook_toolchain() == "nbclient"
    monkeypatch.setitem(run.SUITES, "quick", run.SUITES["smoke"])  # the full path at toy size
    out = tmp_path / "results.json"
    assert run.main(["--quick", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "book" not in data and data["book_skipped"] == "nbclient is not installed"
    assert data["sweep"]["max_abs_diff"] <= 1e-12 and data["curvature"]
    assert "slider_ms" not in data["summary"] and "sweep_speedup" in data["summary"]


def _appendix_code() -> str:
    text = (ROOT / "book" / "benchmarks.md").read_text()
    cells = re.findall(r"```\{code-cell\} ipython3\n(.*?)```", text, flags=re.S)
    assert len(cells) >= 5
    return "\n".join("\n".join(line for line in c.splitlines() if not line.startswith(":")) for c in cells)


def test_the_appendix_shows_a_device_whose_run_skipped_the_notebooks(tmp_path):
    """The appendix's code, run on the committed CPU results and a GPU run without the notebooks."""
    (tmp_path / "book").mkdir()
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    cpu = json.loads((ROOT / "benchmarks" / "results-cpu.json").read_text())
    gpu = {k: v for k, v in cpu.items() if k != "book"}
    gpu.update(device={**cpu["device"], "platform": "gpu", "device": "cuda:0"},
               book_skipped="nbclient is not installed")
    for name, data in (("cpu", cpu), ("gpu", gpu)):
        (bench / f"results-{name}.json").write_text(json.dumps(data))
    (bench / "peers-cpu.json").write_text((ROOT / "benchmarks" / "peers-cpu.json").read_text())
    result = subprocess.run([sys.executable, "-c", _appendix_code()], cwd=tmp_path / "book", capture_output=True,
                            text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no slider or notebook timings on this device: nbclient is not installed" in result.stdout
    assert "cpu: whole book" in result.stdout and "gpu: whole book" not in result.stdout
    assert "gpu: 256 settings x 1000 steps" in result.stdout  # its sweep is shown
    assert "dyncore at least as fast as the fastest peer in" in result.stdout  # the peers' table
    assert "a tracked step costs" in result.stdout


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("script", ["run", "peers"])
def test_only_a_full_run_writes_the_tracked_results(script):
    module = _load(script)
    full = module.default_out("full", "cpu")
    assert full.parent == ROOT / "benchmarks"
    for suite in ("quick", "smoke"):
        path = module.default_out(suite, "cpu")
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT).returncode == 0
        assert ignored and path != full, f"{script} --{suite} would write {path}, which git tracks"


def test_a_quick_run_leaves_git_status_clean(monkeypatch):
    run = _load("run")
    monkeypatch.setitem(run.SUITES, "quick", run.SUITES["smoke"])  # the quick path, at toy size
    before = _git_status()
    assert run.main(["--quick", "--skip-book"]) == 0
    assert _git_status() == before
    assert run.default_out("quick", "cpu").exists()


def test_peers_smoke_run_reaches_the_accuracy_and_names_what_it_skipped(tmp_path):
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--smoke", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("PEERS d=")
    data = json.loads(out.read_text())
    peers = _load("peers")
    assert set(data["skipped"]) | {r["tool"] for r in data["rows"]} == set(peers.TOOLS)
    assert all(why for why in data["skipped"].values())
    for row in data["rows"]:  # every tool that ran delivered the k pairs at the asked accuracy, or says why not
        assert row["passed"] or row["why"], row
        if row["passed"]:
            assert row["max_residual"] <= data["tol"] and row["hvps"] >= row["k"]
    assert all(r["passed"] for r in data["rows"] if r["tool"] == "dyncore")
    for summary in data["summary"]:
        assert f"d={summary['params']} k={summary['k']}: dyncore" in last
    for tr in data["tracking"]:  # the observer's residual estimates meet the tolerance it was given
        assert tr["max_residual"] <= data["tol"] * 1.01 and tr["hvps_per_step"] >= tr["k"]


def test_committed_peer_results_cover_the_issue_grid():
    data = json.loads((ROOT / "benchmarks" / "peers-cpu.json").read_text())
    assert data["suite"] == "full"
    sizes = sorted({r["params"] for r in data["rows"]})
    assert [round(math.log10(d)) for d in sizes] == [4, 5, 6]
    assert sorted({r["k"] for r in data["rows"]}) == [1, 5, 20]
    for row in data["rows"]:
        if row["passed"]:
            assert row["max_residual"] <= data["tol"]
    for check in data["checks"]:  # the PyTorch copy computed the same loss and products
        assert check["loss_rel_diff"] < 1e-5 and check["hvp_rel_diff"] < 1e-4
    peers = _load("peers")
    assert peers.summarise(data["rows"]) == data["summary"]  # the table is the rows' own summary
    assert {(t["params"], t["k"]) for t in data["tracking"]} == {(d, k) for d in sizes for k in (1, 20)}
