"""dyncore's benchmark suite: slider latency, vectorized sweeps, curvature at scale, the whole book.

    python benchmarks/run.py            # the full suite (about 4 minutes on 2 CPU cores)
    python benchmarks/run.py --quick    # a reduced suite, under 5 minutes on 2 CPU cores
    python benchmarks/run.py --smoke    # seconds: every benchmark at toy size (used by the tests)

Prints a table per benchmark and ends with one line

    SUMMARY device=cpu slider_ms=<median ms> sweep_speedup=<x> book_exec_s=<s> ...

and writes the results as JSON: a full run to ``benchmarks/results-<device>.json``, which the book's
benchmark appendix plots; ``--quick`` and ``--smoke`` to ``_build/benchmarks/`` (untracked), so
a quick run never overwrites the committed results; ``--out`` to choose. The same code runs unchanged on a GPU: JAX
picks the device (``jax.devices()``), and the JSON records it. Benchmarks 1 and 4 execute the
notebooks and need the book's toolchain (nbclient, ipykernel, ipywidgets); where it is missing, as
on a GPU machine that has only JAX and its numerical libraries (run there with
``PYTHONPATH=src``), they are skipped, the JSON says why (``book_skipped``) and the appendix shows
the rest.

1. **Slider latency**: every slider figure of the book, in its notebook's own kernel, after the
   notebook has run: median time of a slider move (recompute + redraw + PNG), split into compute
   and draw, the fastest move (what a quiet machine gives), and the compile time of its
   ``compute`` (trace + lower + compile), done once.
2. **Sweep throughput**: gradient descent on a quadratic over a grid of (eta, lam) settings, one
   ``vmap``-ed jitted call versus the loop a student writes (one call of a jitted function per
   setting); same numbers to 1e-12; then how the vmapped cost scales with grid size, steps and
   parameter count, and the speedup over the loop as a function of the parameter count (the
   target: the vmapped sweep is never slower than the loop).
3. **Curvature at scale**: the top Hessian eigenpairs of an MLP by Lanczos (matrix-free), against
   dense ``eigh`` where the dense Hessian fits, for growing parameter counts (``peers.py``
   compares the same with the field's other tools).
4. **The whole book**: wall time to execute each notebook (nbclient, as the book build does).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

# cells injected into each notebook: record the slider figures it makes, then time them
RECORD = """
import dyncore as _bench_dc
_bench_figures = []
_bench_make = _bench_dc.slider_figure
def _bench_record(*args, **kwargs):
    fig = _bench_make(*args, **kwargs)
    _bench_figures.append(fig)
    return fig
_bench_dc.slider_figure = _bench_record
"""

MEASURE = """
import json as _json, time as _time, jax as _jax, jax.numpy as _jnp, numpy as _np
def _bench_one(fig, repeats):
    values = {s.name: s.start for s in fig.sliders}
    args = {k: _jnp.asarray(v) for k, v in values.items()}
    t0 = _time.perf_counter()
    fresh = lambda **kw: fig._compute.__wrapped__(**kw)  # a new function: no cached executable
    _jax.jit(fresh).lower(**args).compile()
    compile_ms = 1e3 * (_time.perf_counter() - t0)
    fig.render()
    total, compute = [], []
    for i in range(repeats):
        s = fig.sliders[i % len(fig.sliders)]
        v = float(s.grid[(i + 1) % len(s.grid)])
        t0 = _time.perf_counter()
        _jax.block_until_ready(fig._compute(**{**args, s.name: _jnp.asarray(v)}))
        compute.append(1e3 * (_time.perf_counter() - t0))
        t0 = _time.perf_counter()
        fig.render(**{s.name: v})
        total.append(1e3 * (_time.perf_counter() - t0))
    med = lambda x: float(_np.median(x))
    return dict(caption=fig.caption, sliders=[s.name for s in fig.sliders], compile_ms=compile_ms,
                move_ms=med(total), compute_ms=med(compute), draw_ms=med(total) - med(compute),
                move_min_ms=float(min(total)))
print("BENCH_FIGURES " + _json.dumps([_bench_one(f, REPEATS) for f in _bench_figures]))
"""


def _device() -> dict:
    import jax

    d = jax.devices()[0]
    return dict(platform=d.platform, device=str(d), n_devices=len(jax.devices()),
                processor=platform.processor() or platform.machine(), cores=os.cpu_count(),
                jax=jax.__version__, python=platform.python_version())


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------ 1 + 4: the book
def _missing_notebook_toolchain() -> str | None:
    """The first package that executing the notebooks needs and this Python lacks, or None."""
    import importlib.util

    needed = ("nbformat", "nbclient", "ipykernel", "ipywidgets")
    return next((m for m in needed if importlib.util.find_spec(m) is None), None)


def bench_book(notebooks: list[pathlib.Path], repeats: int, timeout: int = 900) -> dict:
    """Execute each notebook as the build does (static frames included) and time its figures."""
    import nbformat
    from nbclient import NotebookClient

    per_notebook, figures = {}, []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first + 1, nbformat.v4.new_code_cell(RECORD))
        nb.cells.append(nbformat.v4.new_code_cell(MEASURE.replace("REPEATS", str(repeats))))
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        t0 = time.perf_counter()
        client.execute()
        wall = time.perf_counter() - t0
        out = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
        line = next(l for l in out.splitlines() if l.startswith("BENCH_FIGURES "))
        figs = json.loads(line[len("BENCH_FIGURES "):])
        bench_s = sum(f["compile_ms"] + (repeats + 1) * f["move_ms"] + repeats * f["compute_ms"] for f in figs) / 1e3
        per_notebook[path.stem] = dict(exec_s=max(wall - bench_s, 0.0), figures=len(figs))
        figures += [dict(notebook=path.stem, **f) for f in figs]
        print(f"  {path.stem:28s} executed in {per_notebook[path.stem]['exec_s']:6.1f} s, "
              f"{len(figs)} slider figures", flush=True)
    return dict(notebooks=per_notebook, figures=figures,
                book_exec_s=sum(v["exec_s"] for v in per_notebook.values()))


# ------------------------------------------------------------------------------ 2: sweeps
def _sweep_fns(dim: int, n_steps: int):
    import jax
    import jax.numpy as jnp

    import dyncore as dc

    Q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (dim, dim)))
    A = (Q * jnp.linspace(0.1, 1.0, dim)) @ Q.T  # a dense SPD matrix, curvatures in [0.1, 1]
    loss = lambda th: 0.5 * th @ A @ th
    theta0 = jnp.ones(dim)

    def final_loss(eta, lam):
        return dc.run(dc.gd(eta, lam=lam), loss, theta0, n_steps, every=n_steps).loss[-1]

    return jax.jit(final_loss), jax.jit(jax.vmap(final_loss))


def _grid(n: int):
    import jax.numpy as jnp

    side = int(round(math.sqrt(n)))
    etas, lams = jnp.meshgrid(jnp.linspace(0.05, 1.5, side), jnp.linspace(0.0, 0.2, n // side))
    return etas.ravel(), lams.ravel()


def _paired(time_loop, time_vmap, repeats: int) -> tuple[float, float, list[float]]:
    """Median loop time, median vmap time and the sorted loop/vmap ratios of ``repeats`` pairs.

    The two are timed back to back in each pair, and a speedup is the median of the per-pair
    ratios: a slow phase of a shared machine then slows both sides of a pair instead of one side
    of the comparison.
    """
    pairs = [(time_loop(), time_vmap()) for _ in range(repeats)]
    ratios = sorted(a / b for a, b in pairs)
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs), ratios


def _headline(grid: int, n_steps: int, dim: int, repeats: int) -> dict:
    """The loop of jitted calls against one vmapped call: times, speedup, largest difference."""
    import jax
    import numpy as np

    one, batched = _sweep_fns(dim, n_steps)
    etas, lams = _grid(grid)
    settings = list(zip(np.asarray(etas).tolist(), np.asarray(lams).tolist()))  # Python floats
    loop = lambda: [float(one(e, l)) for e, l in settings]
    jax.block_until_ready(batched(etas, lams))
    float(one(*settings[0]))  # compile both once (with the argument types they are timed with)
    t_loop, t_vmap, ratios = _paired(
        lambda: _median_time(loop, 1), lambda: _median_time(lambda: jax.block_until_ready(batched(etas, lams)), 3),
        repeats)
    diff = float(np.max(np.abs(np.asarray(batched(etas, lams)) - np.asarray(loop()))))
    return dict(grid=int(etas.size), n_steps=n_steps, dim=dim, loop_s=t_loop, vmap_s=t_vmap,
                speedup=statistics.median(ratios), speedup_range=[ratios[0], ratios[-1]], max_abs_diff=diff)


def _headline_xla_default(grid: int, n_steps: int, dim: int, repeats: int) -> dict:
    """:func:`_headline` in a fresh process with XLA's own loop handling (dyncore's setting off)."""
    import subprocess

    from dyncore import xla_setup as _xla

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env[_xla.OPT_OUT] = "1"
    if _xla.FLAGS_BEFORE is not None:  # the caller's own flags, without what dyncore added
        env["XLA_FLAGS"] = _xla.FLAGS_BEFORE
    cmd = [sys.executable, __file__, "--headline-sweep", json.dumps([grid, n_steps, dim, repeats])]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True, timeout=900).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_sweep(grid: int, n_steps: int, dim: int, scaling: dict, repeats: int) -> dict:
    import jax
    import numpy as np

    result = dict(**_headline(grid, n_steps, dim, repeats), scaling=[])
    ratios = result["speedup_range"]
    print(f"  {grid} settings x {n_steps} steps, d = {dim}: loop {result['loop_s'] * 1e3:.1f} ms, "
          f"vmap {result['vmap_s'] * 1e3:.1f} ms, speedup {result['speedup']:.1f}x "
          f"({ratios[0]:.1f}-{ratios[-1]:.1f}x over {repeats} pairs), max |diff| {result['max_abs_diff']:.1e}",
          flush=True)
    default = result["xla_default"] = _headline_xla_default(grid, n_steps, dim, repeats)
    print(f"  the same with XLA's own loop handling: loop {default['loop_s'] * 1e3:.1f} ms, "
          f"vmap {default['vmap_s'] * 1e3:.1f} ms, speedup {default['speedup']:.1f}x, "
          f"max |diff| {default['max_abs_diff']:.1e}", flush=True)
    base = dict(grid=grid, n_steps=n_steps, dim=dim)
    for key, values in scaling.items():
        for v in values:
            cfg = {**base, key: v}
            single, f = _sweep_fns(cfg["dim"], cfg["n_steps"])
            e, l = _grid(cfg["grid"])
            jax.block_until_ready(f(e, l))
            t = _median_time(lambda: jax.block_until_ready(f(e, l)), repeats)
            row = dict(vary=key, **cfg, vmap_s=t)
            extra = ""
            if key == "dim":  # the student's loop too: grid x the median time of one call
                sample = list(zip(np.asarray(e).tolist(), np.asarray(l).tolist()))[:: max(1, e.size // 16)]
                float(single(*sample[0]))
                loop_s, _, ratios = _paired(
                    lambda: e.size * statistics.median(_median_time(lambda p=p: float(single(*p)), 1) for p in sample),
                    lambda: _median_time(lambda: jax.block_until_ready(f(e, l)), 1), repeats)
                row.update(loop_s=loop_s, speedup=statistics.median(ratios))
                extra = (f", loop {row['loop_s'] * 1e3:8.1f} ms (grid x one call), "
                         f"speedup {row['speedup']:5.1f}x")
            result["scaling"].append(row)
            print(f"    vary {key:8s} = {v:6d}: vmap {t * 1e3:8.2f} ms{extra}", flush=True)
    return result


# ------------------------------------------------------------------------------ 3: curvature
def bench_curvature(sizes: list[tuple[int, ...]], dense_max: int, k: int, num_iters: int) -> list[dict]:
    import jax
    import numpy as np

    import dyncore as dc

    rows = []
    for sz in sizes:
        prob = dc.mlp(jax.random.PRNGKey(0), sizes=sz, n=256)
        d = sum(x.size for x in jax.tree_util.tree_leaves(prob.theta0))
        top = jax.jit(lambda p: dc.top_eigenpairs(prob.loss, p, k=k, num_iters=num_iters).values)
        jax.block_until_ready(top(prob.theta0))
        t_lanczos = _median_time(lambda: jax.block_until_ready(top(prob.theta0)), 3)
        lanczos = np.asarray(top(prob.theta0))
        row = dict(sizes=list(sz), params=d, k=k, num_iters=num_iters, lanczos_s=t_lanczos,
                   top=lanczos.tolist(), dense_s=None, rel_err=None)
        if d <= dense_max:
            dense_fn = jax.jit(lambda p: dc.hessian_eigh(prob.loss, p)[0])
            jax.block_until_ready(dense_fn(prob.theta0))
            row["dense_s"] = _median_time(lambda: jax.block_until_ready(dense_fn(prob.theta0)), 2)
            dense = np.sort(np.asarray(dense_fn(prob.theta0)))[::-1][:k]
            row["rel_err"] = float(np.max(np.abs(lanczos - dense) / np.abs(dense)))
        rows.append(row)
        extra = f", dense eigh {row['dense_s']:.3f} s, max rel. diff {row['rel_err']:.1e}" if row["dense_s"] else ""
        print(f"  MLP {sz}: {d:7d} parameters, Lanczos top-{k} {t_lanczos:.3f} s{extra}", flush=True)
    return rows


SUITES = {
    "full": dict(repeats=15, sweep=dict(grid=256, n_steps=1000, dim=10, repeats=9,
                                       scaling=dict(grid=[16, 64, 256, 1024], n_steps=[250, 1000, 4000],
                                                    dim=[2, 5, 10, 30, 100, 300])),
                 curvature=dict(sizes=[(8, 32, 32, 1), (16, 64, 64, 1), (32, 128, 128, 1),
                                       (64, 256, 256, 10), (128, 256, 256, 10)], dense_max=5000, k=5, num_iters=60)),
    "quick": dict(repeats=5, sweep=dict(grid=256, n_steps=1000, dim=10, repeats=3,
                                        scaling=dict(grid=[16, 256, 1024], n_steps=[250, 4000],
                                                     dim=[2, 5, 10, 30, 100, 300])),
                  curvature=dict(sizes=[(8, 32, 32, 1), (32, 128, 128, 1), (64, 256, 256, 10)],
                                 dense_max=2500, k=5, num_iters=40)),
    "smoke": dict(repeats=2, sweep=dict(grid=16, n_steps=50, dim=4, repeats=1, scaling=dict(grid=[4], dim=[2])),
                  curvature=dict(sizes=[(2, 4, 1)], dense_max=100, k=2, num_iters=10)),
}


def default_out(suite: str, platform_name: str) -> pathlib.Path:
    """Where a run writes: the committed file for the full suite, an untracked one otherwise."""
    if suite == "full":
        return HERE / f"results-{platform_name}.json"
    return ROOT / "_build" / "benchmarks" / f"results-{platform_name}-{suite}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dyncore benchmarks")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced suite, < 5 min on 2 CPU cores")
    mode.add_argument("--smoke", action="store_true", help="toy sizes, seconds (no notebooks)")
    parser.add_argument("--out", help="JSON output (default: benchmarks/results-<platform>.json for the full "
                                      "suite, _build/benchmarks/ for --quick and --smoke)")
    parser.add_argument("--skip-book", action="store_true", help="skip benchmarks 1 and 4")
    parser.add_argument("--headline-sweep", help=argparse.SUPPRESS)  # internal: one sweep, as JSON
    args = parser.parse_args(argv)
    suite_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    suite = SUITES[suite_name]
    # on a GPU this process and each notebook kernel it starts would otherwise each try to reserve
    # 75% of the device's memory; allocate on demand instead (no effect on a CPU)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    import dyncore  # noqa: F401  (first: its XLA setting must precede JAX's backend, see dyncore.xla_setup)
    import jax

    jax.config.update("jax_enable_x64", True)  # the sweep is compared to 1e-12
    if args.headline_sweep:
        print(json.dumps(_headline(*json.loads(args.headline_sweep))))
        return 0
    device = _device()
    print(f"dyncore benchmarks ({suite_name}) on {device['device']} ({device['processor']}, "
          f"{device['cores']} cores), jax {device['jax']}", flush=True)
    t_start = time.perf_counter()
    results = dict(suite=suite_name, device=device, date=time.strftime("%Y-%m-%d"))

    print("2. sweep throughput", flush=True)
    results["sweep"] = bench_sweep(**suite["sweep"])
    print("3. curvature at scale", flush=True)
    results["curvature"] = bench_curvature(**suite["curvature"])
    run_book = not (args.smoke or args.skip_book)
    missing = _missing_notebook_toolchain() if run_book else None
    if missing:  # e.g. a GPU machine with JAX but without Jupyter: measure the rest, and say so
        results["book_skipped"] = f"{missing} is not installed"
        print(f"1 + 4. skipped: {results['book_skipped']} (the notebooks need the book's toolchain, "
              "pip install -r requirements.txt)", flush=True)
    elif run_book:
        print("1 + 4. the book's notebooks and slider figures", flush=True)
        notebooks = sorted((ROOT / "book").glob("*.ipynb"))
        results["book"] = bench_book(notebooks, suite["repeats"])
        figs = results["book"]["figures"]
        print(f"  {'notebook':24s} {'sliders':18s} {'move ms':>8s} {'fastest':>8s} {'compute':>8s} {'draw':>8s} "
              f"{'compile ms':>10s}")
        for f in sorted(figs, key=lambda f: -f["move_ms"]):
            print(f"  {f['notebook']:24s} {','.join(f['sliders']):18s} {f['move_ms']:8.1f} {f['move_min_ms']:8.1f} "
                  f"{f['compute_ms']:8.1f} {f['draw_ms']:8.1f} {f['compile_ms']:10.0f}")
    results["total_s"] = time.perf_counter() - t_start

    summary = dict(device=device["platform"], sweep_speedup=round(results["sweep"]["speedup"], 1),
                   sweep_speedup_xla_default=round(results["sweep"]["xla_default"]["speedup"], 1),
                   sweep_max_diff=f"{results['sweep']['max_abs_diff']:.1e}")
    if "book" in results:
        moves = [f["move_ms"] for f in results["book"]["figures"]]
        summary = dict(device=device["platform"], slider_ms=round(max(moves), 1),
                       slider_median_ms=round(statistics.median(moves), 1),
                       slider_compile_ms=round(max(f["compile_ms"] for f in results["book"]["figures"])),
                       **{k: v for k, v in summary.items() if k != "device"},
                       book_exec_s=round(results["book"]["book_exec_s"], 1))
    big = max(results["curvature"], key=lambda r: r["params"])
    summary.update(lanczos_params=big["params"], lanczos_s=round(big["lanczos_s"], 3),
                   total_s=round(results["total_s"], 1))
    results["summary"] = summary
    out = pathlib.Path(args.out) if args.out else default_out(suite_name, device["platform"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")
    print("SUMMARY " + " ".join(f"{k}={v}" for k, v in summary.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
