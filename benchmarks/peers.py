"""Hessian eigenpairs of a real network: dyncore against the tools people use, side by side.

    python benchmarks/peers.py            # the full run: 10^4, 10^5, 10^6 parameters, k = 1, 5, 20
    python benchmarks/peers.py --quick    # 10^4 and 10^5 parameters, a few minutes
    python benchmarks/peers.py --smoke    # toy size, seconds (used by the tests)

The network is the digits MLP of ``dc.digits`` (64-h-10, tanh, mean cross-entropy on all 1,797
images) at its initial weights, with h = 133, 1,333 and 13,333 (9,985, 99,985 and 999,985
parameters), in float32. The PyTorch copy carries the same weights; before any timing the script
checks that the two losses and one Hessian-vector product agree to float32 round-off.

Every tool must deliver the k largest eigenpairs at the same accuracy: relative residual
``||Hv - mu v|| / |mu| <= 1e-3`` for each pair, measured by this script with one JAX
Hessian-vector product per pair, and eigenvalues within 2e-3 of a reference computed beforehand
(so that a tool cannot pass with the wrong pairs). A tool is tuned by a ladder of its own
accuracy setting (a tolerance, or the Krylov dimension for a tool without one), from loose to
strict; the first setting that passes is the one timed. The budget of a cell (seconds and
products) counts the running time of its attempts, not compiling or warming up. The tuning runs are not counted, which
favours the tools tuned by hand; dyncore is tuned the same way, but its ``tol`` is the target
itself. Times are wall-clock seconds after a warm-up, the median of the repeats; JAX's compile
time is reported separately. Each run counts its Hessian-vector products. A tool that has not
passed within the budget is reported as such, with what it had spent.

Tools (each skipped, with the reason, where it is not installed; ``pip install -r
benchmarks/requirements-peers.txt``):

* ``dyncore``: ``dc.top_eigenpairs(..., tol=1e-3, num_iters=budget)``, Lanczos with full
  re-orthogonalisation, stopped on its own residual estimate (``exact_residuals=False``: the
  script checks instead); the ladder doubles the budget from 32, as a user would;
* ``matfree``: ``matfree.eig.eigh_partial(matfree.decomp.tridiag_sym(m, reortho="full"))``,
  Lanczos with a fixed Krylov dimension m (the ladder), on the same linearised JAX product;
* ``scipy-jax``: ``scipy.sparse.linalg.eigsh`` (ARPACK, implicitly restarted Lanczos,
  ``which="LA"``) on a jitted JAX product, the gradient linearised once outside the timing (from
  Python this was faster than a jitted ``jvp`` of ``grad``: 169 against 217 ms a product at 10^6
  parameters);
* ``pyhessian``: PyHessian's ``hessian(...).eigenvalues(top_n=k, tol=...)``, power iteration with
  deflation (PyTorch);
* ``curvlinops``: ``curvlinops.HessianLinearOperator(...).to_scipy()`` with ``eigsh`` (PyTorch);
* ``hessian-eigenthings``: not on PyPI (it installs from GitHub only), so it is reported as skipped
  unless it is importable; no adapter is written for an API that could not be tried here.

Part 2 measures the cost of tracking along a training run: ``dc.run`` of gradient descent with
``dc.principal.eos_observer`` (top-k pairs warm-started from the previous iterate, the principal
flow's one-step prediction, all compiled once with the run) against the same run without it.

Ends with one line ``PEERS ...`` (for each size and k: dyncore's time, the fastest peer and its
time, and their ratio) and writes JSON: the full run to ``benchmarks/peers-<platform>.json``, which
the book's benchmarks page reads; ``--quick`` and ``--smoke`` to ``_build/benchmarks/`` (untracked),
so a quick run never overwrites the committed results.
"""

from __future__ import annotations

import argparse
import importlib.util
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
TOL = 1e-3  # relative residual every tool must reach
VALUE_TOL = 2e-3  # and how close its eigenvalues must be to the reference top k

SUITES = {
    "full": dict(hidden=[133, 1333, 13333], ks=[1, 5, 20], n=None, repeats=3, big_repeats=1,
                 budget_s=150.0, max_hvps=3000, track_steps=[(30, 20), (30, 20), (30, 8)]),
    "quick": dict(hidden=[133, 1333], ks=[1, 5, 20], n=None, repeats=1, big_repeats=1,
                  budget_s=60.0, max_hvps=1500, track_steps=[(15, 10), (15, 10)]),
    "smoke": dict(hidden=[6], ks=[1, 3], n=120, repeats=1, big_repeats=1,
                  budget_s=30.0, max_hvps=400, track_steps=[(4, 4)]),
}
LADDERS = {  # each tool's accuracy setting, loose to strict
    # dyncore: its tol is the target; the budget num_iters (memory and work are sized by it) doubles
    "dyncore": [(1e-3, 32), (1e-3, 64), (1e-3, 128), (1e-3, 256), (1e-3, 512), (3e-4, 512), (1e-4, 512)],
    "scipy-jax": [1e-3, 1e-4, 1e-5, 1e-6, 0.0],
    "curvlinops": [1e-3, 1e-4, 1e-5, 1e-6, 0.0],
    "pyhessian": [1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8],
}


class OverBudget(Exception):
    """A tool spent more Hessian-vector products or seconds than the budget allows."""


class Meter:
    """Counts a tool's Hessian-vector products and stops it beyond the budget."""

    def __init__(self, max_hvps: int, deadline: float):
        self.count, self.max_hvps, self.deadline = 0, max_hvps, deadline

    def tick(self, n: int = 1) -> None:
        self.count += n
        if self.count > self.max_hvps or time.perf_counter() > self.deadline:
            raise OverBudget(f"{self.count} products")


def _missing(module: str) -> str | None:
    return None if importlib.util.find_spec(module) is not None else f"{module} is not installed"


# ------------------------------------------------------------------------------ the network
class Net:
    """The digits MLP in JAX (dyncore) and, where PyTorch is installed, its PyTorch copy."""

    def __init__(self, hidden: int, n: int | None):
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        import dyncore as dc

        self.prob = dc.digits(jax.random.PRNGKey(0), hidden=hidden, n=n, dtype=jnp.float32)
        self.hidden = hidden
        self.flat, self.unravel = ravel_pytree(self.prob.theta0)
        self.d = int(self.flat.size)
        self.grad_flat = lambda x: ravel_pytree(jax.grad(self.prob.loss)(self.unravel(x)))[0]  # noqa: E731
        self.hvp = jax.jit(lambda x, v: jax.jvp(self.grad_flat, (x,), (v,))[1])  # the referee's product
        self.hvp_many = jax.jit(jax.vmap(self.hvp, in_axes=(None, 1), out_axes=1))
        self.torch = None

    def torch_copy(self):
        """(model, criterion, X, y, to_flat) with the same weights; to_flat maps a list of
        per-parameter tensors to dyncore's flat order."""
        import numpy as np
        import torch

        (W1, b1), (W2, b2) = (tuple(np.asarray(a) for a in layer) for layer in self.prob.theta0)
        model = torch.nn.Sequential(torch.nn.Linear(64, self.hidden), torch.nn.Tanh(), torch.nn.Linear(self.hidden, 10))
        with torch.no_grad():
            model[0].weight.copy_(torch.from_numpy(W1.T.copy()))
            model[0].bias.copy_(torch.from_numpy(b1.copy()))
            model[2].weight.copy_(torch.from_numpy(W2.T.copy()))
            model[2].bias.copy_(torch.from_numpy(b2.copy()))
        X, y = (np.asarray(a) for a in self.prob.data)
        X, y = torch.from_numpy(X.copy()), torch.from_numpy(y.astype(np.int64))

        def to_flat(tensors) -> np.ndarray:
            w1, c1, w2, c2 = (t.detach().cpu().numpy() for t in tensors)
            return np.concatenate([w1.T.ravel(), c1.ravel(), w2.T.ravel(), c2.ravel()])

        def from_flat(v: np.ndarray):
            h = self.hidden
            w1 = v[: 64 * h].reshape(64, h).T
            c1 = v[64 * h: 65 * h]
            w2 = v[65 * h: 65 * h + 10 * h].reshape(h, 10).T
            c2 = v[75 * h:]
            return [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (w1, c1, w2, c2)]

        return model, torch.nn.CrossEntropyLoss(), X, y, to_flat, from_flat

    def check_torch_agrees(self) -> dict:
        """The two losses and one Hessian-vector product agree to float32 round-off."""
        import jax
        import numpy as np
        import torch

        model, crit, X, y, to_flat, from_flat = self.torch_copy()
        params = list(model.parameters())
        loss_t = crit(model(X), y)
        grads = torch.autograd.grad(loss_t, params, create_graph=True)
        v = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (self.d,)), dtype=np.float32)
        hv_t = to_flat(torch.autograd.grad(grads, params, grad_outputs=from_flat(v)))
        hv_j = np.asarray(self.hvp(self.flat, v))
        loss_j = float(self.prob.loss(self.prob.theta0))
        out = dict(loss_jax=loss_j, loss_torch=float(loss_t.detach()),
                   loss_rel_diff=abs(loss_j - float(loss_t.detach())) / abs(loss_j),
                   hvp_rel_diff=float(np.linalg.norm(hv_t - hv_j) / np.linalg.norm(hv_j)))
        if not (out["loss_rel_diff"] < 1e-5 and out["hvp_rel_diff"] < 1e-4):
            raise RuntimeError(f"the PyTorch copy does not compute the same loss and Hessian: {out}")
        return out

    def residuals(self, values, vectors):
        """Relative residuals ||Hv - mu v|| / |mu| of flat eigenpairs (vectors normalised first)."""
        import jax.numpy as jnp
        import numpy as np

        V = jnp.asarray(np.asarray(vectors, dtype=np.float32))
        V = V / jnp.linalg.norm(V, axis=0, keepdims=True)
        mu = jnp.asarray(np.asarray(values, dtype=np.float32))
        r = jnp.linalg.norm(self.hvp_many(self.flat, V) - V * mu[None, :], axis=0) / jnp.abs(mu)
        return np.asarray(r, dtype=float)


# ------------------------------------------------------------------------------ the tools
# A tool is ``prepare(net, k) -> (run(setting, meter) -> (values, flat vectors), compile_s)``.
def tool_dyncore(net: Net, k: int):
    import jax

    import dyncore as dc

    compiled = {}

    def prepare(setting):
        tol, budget = setting
        if setting not in compiled:
            fn = jax.jit(lambda p: dc.top_eigenpairs(net.prob.loss, p, k, num_iters=max(k, min(budget, net.d)),
                                                     tol=tol, exact_residuals=False))
            t0 = time.perf_counter()
            compiled[setting] = fn.lower(net.prob.theta0).compile()
            run.compile_s = time.perf_counter() - t0

    def run(setting, meter):
        ep = jax.block_until_ready(compiled[setting](net.prob.theta0))
        meter.tick(int(ep.num_matvecs))
        return ep.values, ep.vectors

    run.compile_s, run.prepare = 0.0, prepare
    return run


def tool_matfree(net: Net, k: int):
    import jax
    import matfree.decomp
    import matfree.eig

    v0 = jax.random.normal(jax.random.PRNGKey(1), (net.d,), net.flat.dtype)
    compiled = {}

    def prepare(m):
        if m not in compiled:
            eigh = matfree.eig.eigh_partial(matfree.decomp.tridiag_sym(m, reortho="full"))

            def solve(x, v0):  # linearised inside the call, as dyncore does
                _, mv = jax.linearize(net.grad_flat, x)
                vals, vecs = eigh(mv, v0)
                return vals[-k:][::-1], vecs[-k:][::-1].T

            t0 = time.perf_counter()
            compiled[m] = jax.jit(solve).lower(net.flat, v0).compile()
            run.compile_s = time.perf_counter() - t0

    def run(m, meter):
        vals, vecs = jax.block_until_ready(compiled[m](net.flat, v0))
        meter.tick(m)
        return vals, vecs

    run.compile_s, run.prepare = 0.0, prepare
    return run


def tool_scipy_jax(net: Net, k: int):
    import jax
    import numpy as np
    from scipy.sparse.linalg import LinearOperator, eigsh

    # the gradient linearised once, outside the timing (the fastest product measured from Python)
    _, lin = jax.linearize(net.grad_flat, net.flat)
    t0 = time.perf_counter()
    mv = jax.jit(lin).lower(net.flat).compile()
    compile_s = time.perf_counter() - t0
    v0 = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (net.d,)), dtype=np.float32)

    def run(tol, meter):
        def matvec(v):
            meter.tick()
            return np.asarray(mv(np.asarray(v, dtype=np.float32).ravel()))

        op = LinearOperator((net.d, net.d), matvec=matvec, dtype=np.float32)
        vals, vecs = eigsh(op, k=k, which="LA", tol=tol, v0=v0, maxiter=10 * net.d)
        order = np.argsort(vals)[::-1]
        return vals[order], vecs[:, order]

    run.compile_s = compile_s
    return run


def tool_pyhessian(net: Net, k: int):
    import numpy as np
    import pyhessian.hessian  # noqa: F401  (the package re-exports the class under the module's name)
    import torch

    ph = sys.modules["pyhessian.hessian"]

    model, crit, X, y, to_flat, _ = net.torch_copy()
    original = ph.hessian_vector_product

    def run(tol, meter):
        def counted(*args, **kwargs):
            meter.tick()
            return original(*args, **kwargs)

        ph.hessian_vector_product = counted
        try:
            torch.manual_seed(0)
            model.zero_grad()
            h = ph.hessian(model, crit, data=(X, y), cuda=False)
            vals, vecs = h.eigenvalues(maxIter=10**6, tol=tol, top_n=k)
        finally:
            ph.hessian_vector_product = original
        V = np.stack([to_flat(v) for v in vecs], axis=1)
        order = np.argsort(vals)[::-1]
        return np.asarray(vals)[order], V[:, order]

    run.compile_s = 0.0
    return run


def tool_curvlinops(net: Net, k: int):
    import numpy as np
    from curvlinops import HessianLinearOperator
    from scipy.sparse.linalg import LinearOperator, eigsh

    model, crit, X, y, to_flat, _ = net.torch_copy()
    params = [p for p in model.parameters()]
    v0 = np.asarray(np.random.default_rng(1).standard_normal(net.d), dtype=np.float32)

    def run(tol, meter):
        H = HessianLinearOperator(model, crit, params, [(X, y)], check_deterministic=False).to_scipy(dtype=np.float32)

        def matvec(v):
            meter.tick()
            return H @ np.asarray(v, dtype=np.float32).ravel()

        op = LinearOperator(H.shape, matvec=matvec, dtype=np.float32)
        vals, vecs = eigsh(op, k=k, which="LA", tol=tol, v0=v0, maxiter=10 * net.d)
        order = np.argsort(vals)[::-1]
        # curvlinops orders the flat vector by model.parameters(): W1 (h x 64), b1, W2 (10 x h), b2
        h = net.hidden
        split = np.cumsum([64 * h, h, 10 * h])

        def reorder(v):
            w1, c1, w2, c2 = np.split(v, split)
            return np.concatenate([w1.reshape(h, 64).T.ravel(), c1, w2.reshape(10, h).T.ravel(), c2])

        V = np.stack([reorder(vecs[:, i]) for i in order], axis=1)
        return vals[order], V

    run.compile_s = 0.0
    return run


TOOLS = {  # name -> (module needed, prepare, ladder, framework)
    "dyncore": ("dyncore", tool_dyncore, "dyncore", "JAX"),
    "matfree": ("matfree", tool_matfree, None, "JAX"),
    "scipy-jax": ("scipy", tool_scipy_jax, "scipy-jax", "JAX + SciPy"),
    "pyhessian": ("pyhessian", tool_pyhessian, "pyhessian", "PyTorch"),
    "curvlinops": ("curvlinops", tool_curvlinops, "curvlinops", "PyTorch + SciPy"),
    "hessian-eigenthings": ("hessian_eigenthings", None, None, "PyTorch"),
}
PEERS = [t for t in TOOLS if t != "dyncore"]


def _needs(name: str) -> str | None:
    module, prepare, *_ = TOOLS[name]
    missing = _missing(module)
    if missing and name == "hessian-eigenthings":
        return (f"{missing}: not on PyPI (pip install git+https://github.com/noahgolmant/"
                "pytorch-hessian-eigenthings.git); not measured here, and no adapter is written untried")
    if missing is None and prepare is None:
        return "importable, but no adapter: its API could not be tried where this script was written"
    if missing is None and TOOLS[name][3].startswith("PyTorch"):
        missing = _missing("torch")
    return missing


def _matfree_ladder(k: int, d: int) -> list[int]:
    m, out = k + 2, []
    while m <= min(d, 600):
        out.append(m)
        m = max(m + 1, int(round(m * 1.1)))
    return out


def measure(net: Net, name: str, k: int, reference, suite: dict) -> dict:
    """Tune ``name`` by its ladder until the k pairs pass, then time the passing setting."""
    prepare = TOOLS[name][1]
    ladder = _matfree_ladder(k, net.d) if name == "matfree" else LADDERS[TOOLS[name][2]]
    row = dict(tool=name, params=net.d, hidden=net.hidden, k=k, passed=False, attempts=[])
    try:
        run = prepare(net, k)
        compile_first = getattr(run, "prepare", lambda setting: None)  # JAX: compile, not timed
        compile_first(ladder[0])
        run(ladder[0], Meter(10**9, math.inf))  # warm-up once, not counted
        for setting in ladder:
            compile_first(setting)
            spent = sum(a["time_s"] for a in row["attempts"])  # the budget counts running, not compiling
            t0 = time.perf_counter()
            meter = Meter(suite["max_hvps"], t0 + suite["budget_s"] - spent)
            try:
                values, vectors = run(setting, meter)
            except OverBudget:
                row["attempts"].append(dict(setting=setting, time_s=time.perf_counter() - t0, hvps=meter.count))
                raise
            wall = time.perf_counter() - t0
            res = net.residuals(values, vectors)
            values = [float(v) for v in values]
            right = all(abs(v - r) <= VALUE_TOL * abs(r) for v, r in zip(values, reference[:k]))
            ok = bool(len(values) == k and right and max(res) <= TOL)
            row["attempts"].append(dict(setting=setting, time_s=wall, hvps=meter.count, max_residual=float(max(res)),
                                        right_values=right))
            if ok:
                times = [wall]
                repeats = suite["big_repeats"] if net.d > 5e5 else suite["repeats"]
                for _ in range(repeats - 1):
                    t0 = time.perf_counter()
                    run(setting, Meter(10**9, math.inf))
                    times.append(time.perf_counter() - t0)
                row.update(passed=True, setting=setting, time_s=statistics.median(times), hvps=meter.count,
                           max_residual=float(max(res)), compile_s=run.compile_s, values=values)
                break
        else:
            row["why"] = f"no setting of the ladder reached the accuracy (last: {ladder[-1]})"
    except OverBudget as e:
        row["why"] = (f"over the budget ({suite['max_hvps']} products or {suite['budget_s']:.0f} s for the cell; "
                      f"the last attempt had spent {e})")
    except Exception as e:  # a tool that fails is reported, not hidden
        row["why"] = f"{type(e).__name__}: {e}"[:300]
    row["spent_s"] = sum(a["time_s"] for a in row["attempts"])
    return row


def reference_values(net: Net, k: int) -> list[float]:
    """The top k eigenvalues, by dyncore's Lanczos run far past the target (tol 1e-6)."""
    import dyncore as dc

    ep = dc.top_eigenpairs(net.prob.loss, net.prob.theta0, k + 2, num_iters=min(net.d, 400), tol=1e-6)
    return [float(v) for v in ep.values[:k]]


# ------------------------------------------------------------------------------ 2: tracking
def tracking(net: Net, k: int, n_steps: int, repeats: int) -> dict:
    """Cost of a tracked step (eos_observer) in training steps, and its products."""
    import jax
    import numpy as np

    import dyncore as dc

    mu0 = float(dc.top_eigenpairs(net.prob.loss, net.prob.theta0, 1, num_iters=60, tol=1e-4).values[0])
    eta = 1.0 / mu0  # halfway to the edge of stability at the start
    obs = dc.principal.eos_observer(net.prob.loss, eta=eta, k=k, tol=TOL)
    plain = jax.jit(lambda th: dc.run(dc.gd(eta), net.prob.loss, th, n_steps).loss)
    tracked = jax.jit(lambda th: dc.run(dc.gd(eta), net.prob.loss, th, n_steps, observe=obs))
    out = dict(params=net.d, hidden=net.hidden, k=k, n_steps=n_steps, eta=eta)
    for name, fn in (("plain", plain), ("tracked", tracked)):
        t0 = time.perf_counter()
        compiled = fn.lower(net.prob.theta0).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        result = jax.block_until_ready(compiled(net.prob.theta0))
        out[f"{name}_s"] = statistics.median(
            _timed(lambda: jax.block_until_ready(compiled(net.prob.theta0))) for _ in range(repeats))
        if name == "tracked":
            diag = result.observed
    warm = np.asarray(diag.num_matvecs[1:])
    out.update(step_s=out["plain_s"] / n_steps,
               tracked_step_s=(out["tracked_s"] - out["plain_s"]) / n_steps,
               hvps_per_step=float(warm.mean()), hvps_median=float(np.median(warm)),
               hvps_first=int(diag.num_matvecs[0]), hvps_each=[int(x) for x in np.asarray(diag.num_matvecs)],
               max_residual=float(np.max(np.asarray(diag.residuals[1:]) / np.abs(np.asarray(diag.values[1:])))),
               sharpness=[float(v) for v in np.asarray(diag.values[:, 0])])
    out["cost_in_steps"] = out["tracked_step_s"] / out["step_s"]
    return out


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def default_out(suite: str, platform_name: str) -> pathlib.Path:
    """Where a run writes: the committed file for the full run, an untracked one otherwise."""
    if suite == "full":
        return HERE / f"peers-{platform_name}.json"
    return ROOT / "_build" / "benchmarks" / f"peers-{platform_name}-{suite}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dyncore's curvature against its peers")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="10^4 and 10^5 parameters, a few minutes")
    mode.add_argument("--smoke", action="store_true", help="toy size, seconds")
    parser.add_argument("--out", help="JSON output (default: see the module docstring)")
    parser.add_argument("--tools", help="comma-separated subset of " + ",".join(TOOLS))
    args = parser.parse_args(argv)
    suite_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    suite = SUITES[suite_name]
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    import dyncore  # noqa: F401  (first: its XLA setting must precede JAX's backend)
    import jax

    tools = args.tools.split(",") if args.tools else list(TOOLS)
    if "dyncore" not in tools:
        tools.insert(0, "dyncore")
    d0 = jax.devices()[0]
    device = dict(platform=d0.platform, device=str(d0), processor=platform.processor() or platform.machine(),
                  cores=os.cpu_count(), jax=jax.__version__, python=platform.python_version())
    skipped = {t: why for t in tools if (why := _needs(t))}
    versions = {}
    for t in tools:
        if t not in skipped:
            module = TOOLS[t][0]
            try:
                from importlib.metadata import version

                versions[t] = version({"dyncore": "dyncore", "scipy": "scipy", "matfree": "matfree",
                                       "pyhessian": "pyhessian", "curvlinops": "curvlinops-for-pytorch"}[module])
            except Exception:
                versions[t] = "?"
    if not all(t in skipped for t in tools if TOOLS[t][3].startswith("PyTorch")):
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        versions["torch"] = torch.__version__
    print(f"peers ({suite_name}) on {device['device']} ({device['processor']}, {device['cores']} cores), "
          f"jax {device['jax']}", flush=True)
    for t, why in skipped.items():
        print(f"  skipped {t}: {why}", flush=True)
    active = [t for t in tools if t not in skipped]
    results = dict(suite=suite_name, device=device, date=time.strftime("%Y-%m-%d"), tol=TOL, value_tol=VALUE_TOL,
                   versions=versions, skipped=skipped, checks=[], rows=[], tracking=[])
    t_start = time.perf_counter()
    for hidden, n_track in zip(suite["hidden"], suite["track_steps"]):
        net = Net(hidden, suite["n"])
        if any(TOOLS[t][3].startswith("PyTorch") for t in active):
            check = dict(params=net.d, **net.check_torch_agrees())
            results["checks"].append(check)
            print(f"  {net.d} parameters: JAX and PyTorch agree, loss {check['loss_rel_diff']:.1e}, "
                  f"Hessian-vector product {check['hvp_rel_diff']:.1e} (relative)", flush=True)
        ref = reference_values(net, max(suite["ks"]))
        for k in suite["ks"]:
            for t in active:
                row = measure(net, t, k, ref, suite)
                results["rows"].append(row)
                what = (f"{row['time_s']:8.3f} s, {row['hvps']:5d} products, residual {row['max_residual']:.1e}"
                        f" (setting {row['setting']})" if row["passed"] else f"did not pass: {row['why']}")
                print(f"  d = {net.d:7d}, k = {k:2d}, {t:12s} {what}", flush=True)
        for k, steps in zip((1, max(suite["ks"])), n_track):  # tracked steps for k = 1 and for the largest k
            tr = tracking(net, k, steps, 1 if net.d > 5e5 else suite["repeats"])
            results["tracking"].append(tr)
            print(f"  tracking d = {net.d}, k = {k}: a tracked step costs {tr['cost_in_steps']:.1f} training steps, "
                  f"{tr['hvps_per_step']:.1f} products (median {tr['hvps_median']:.0f}, first iterate {tr['hvps_first']}), "
                  f"max residual {tr['max_residual']:.1e}", flush=True)
        results["total_s"] = time.perf_counter() - t_start
    results["summary"] = summarise(results["rows"])
    out = pathlib.Path(args.out) if args.out else default_out(suite_name, device["platform"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")
    print("PEERS " + "; ".join(
        f"d={s['params']} k={s['k']}: dyncore {_fmt(s['dyncore_s'])}, fastest peer "
        + (f"{s['peer']} {_fmt(s['peer_s'])}, ratio {s['ratio']:.2f}" if s["peer"] else "none passed")
        for s in results["summary"]), flush=True)
    return 0


def _fmt(t):
    return "n/a" if t is None else f"{t:.3g} s"


def summarise(rows: list[dict]) -> list[dict]:
    """Per (size, k): dyncore's time, the fastest peer that passed, and dyncore / that peer."""
    out = []
    for params, k in sorted({(r["params"], r["k"]) for r in rows}):
        cell = [r for r in rows if r["params"] == params and r["k"] == k]
        mine = next((r for r in cell if r["tool"] == "dyncore" and r["passed"]), None)
        peers = [r for r in cell if r["tool"] != "dyncore" and r["passed"]]
        best = min(peers, key=lambda r: r["time_s"]) if peers else None
        out.append(dict(params=params, k=k, dyncore_s=mine["time_s"] if mine else None,
                        dyncore_hvps=mine["hvps"] if mine else None,
                        peer=best["tool"] if best else None, peer_s=best["time_s"] if best else None,
                        peer_hvps=best["hvps"] if best else None,
                        ratio=(mine["time_s"] / best["time_s"]) if (mine and best) else None))
    return out


if __name__ == "__main__":
    sys.exit(main())
