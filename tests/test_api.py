"""The shape of dyncore's public API (issue 18): a small core, theory in namespaces, one name per
hyper-parameter and start point, keyword-only hyper-parameters, no private cross-module imports,
one RK4 stepper."""

import ast
import importlib
import inspect
import io
import pathlib
import pkgutil
import re
import tokenize

import jax.numpy as jnp
import pytest

import dyncore as dc

SRC = pathlib.Path(dc.__file__).resolve().parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(SRC)]))
THEORY = ("eom", "noether", "principal", "adaptive", "scale_invariance", "mixing")
MACHINERY = ("problems", "optimizers", "curvature", "integration", "flows", "runner", "checks", "figures")
HPARAMS = ("eta", "beta", "rho", "eps", "lam")
OLD_START_NAMES = {"params0", "x0", "y0", "u0", "q0"}


def _public(module_name):
    """(qualified name, object) for every name in a dyncore module's ``__all__``."""
    module = importlib.import_module(f"dyncore.{module_name}")
    return [(f"{module_name}.{name}", getattr(module, name)) for name in getattr(module, "__all__", [])]


PUBLIC = [item for name in MODULES for item in _public(name)]
PUBLIC_FUNCTIONS = [(q, f) for q, f in PUBLIC if inspect.isfunction(f)]


def test_the_package_has_the_modules_this_file_inspects():
    assert {"integration", "runner", "optimizers", "validation", "trees", *THEORY} <= set(MODULES)
    assert len(PUBLIC_FUNCTIONS) > 100  # the checks below see the whole public API


# ----------------------------------------------------------------------------- core and namespaces
def test_the_flat_core_is_small():
    assert len(dc.__all__) <= 60
    assert len(set(dc.__all__)) == len(dc.__all__)
    missing = [name for name in dc.__all__ if not hasattr(dc, name)]
    assert not missing


@pytest.mark.parametrize("name", THEORY)
def test_theory_namespace_imports_and_exports_what_it_lists(name):
    module = importlib.import_module(f"dyncore.{name}")
    assert getattr(dc, name) is module  # dc.<name> is the module
    assert name in dc.__all__
    assert module.__all__, f"dyncore.{name} lists no public names"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"dyncore.{name}.__all__ lists missing names {missing}"
    # theory stays in its namespace: none of its names is in the flat core
    assert not set(module.__all__) & set(dc.__all__), set(module.__all__) & set(dc.__all__)


@pytest.mark.parametrize("name", MACHINERY)
def test_machinery_modules_are_reachable_as_namespaces(name):
    module = importlib.import_module(f"dyncore.{name}")
    assert getattr(dc, name) is module
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing


# ----------------------------------------------------------------------------- private imports
def _private_sibling_imports(source: str):
    """``from .x import _y`` and ``from . import _x`` in a module's source (relative imports only)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import {alias.name}")
    return found


def test_the_private_import_finder_can_fail():
    assert _private_sibling_imports("from .flows import _tmap\nfrom . import _rng\nfrom os import _exit") == [
        "line 1: from .flows import _tmap", "line 2: from . import _rng"]
    assert _private_sibling_imports("from .trees import tmap\nfrom . import prng") == []


@pytest.mark.parametrize("name", MODULES)
def test_no_module_imports_a_private_name_from_a_sibling(name):
    found = _private_sibling_imports((SRC / f"{name}.py").read_text())
    assert not found, f"dyncore/{name}.py imports private names from siblings: {found}"


# ----------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("qualname,function", PUBLIC_FUNCTIONS, ids=[q for q, _ in PUBLIC_FUNCTIONS])
def test_hyperparameters_after_the_first_are_keyword_only(qualname, function):
    """A public function taking two or more of eta, beta, rho, eps, lam takes all but the first by keyword."""
    hps = [p for p in inspect.signature(function).parameters.values() if p.name in HPARAMS]
    if len(hps) >= 2:
        positional = [p.name for p in hps[1:] if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        assert not positional, f"{qualname}: {positional} must be keyword-only"


# the only public functions that take a hyper-parameter positionally (api_spec.md): an optimizer's
# learning rate, and lam of the two weight-decay helpers of dc.curvature
POSITIONAL_HPARAMS = {
    **{f"optimizers.{name}": "eta" for name in ("gd", "heavy_ball", "rmsprop", "adam", "adamw", "rmsprop_on_sphere")},
    "curvature.with_decay": "lam",
    "curvature.decayed_spectrum": "lam",
}


@pytest.mark.parametrize("qualname,function", PUBLIC_FUNCTIONS, ids=[q for q, _ in PUBLIC_FUNCTIONS])
def test_hyperparameters_are_keyword_only_except_an_optimizers_learning_rate(qualname, function):
    hps = [p for p in inspect.signature(function).parameters.values() if p.name in HPARAMS]
    positional = [p.name for p in hps if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    allowed = [POSITIONAL_HPARAMS[qualname]] if qualname in POSITIONAL_HPARAMS else []
    assert positional == allowed, f"{qualname}: positional hyper-parameters {positional}, expected {allowed}"


@pytest.mark.parametrize("qualname,obj", [(q, f) for q, f in PUBLIC if callable(f)],
                         ids=[q for q, f in PUBLIC if callable(f)])
def test_the_start_point_is_called_theta0(qualname, obj):
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # a callable without an introspectable signature
        return
    old = OLD_START_NAMES & set(params)
    assert not old, f"{qualname} calls its start point {sorted(old)}; the name is theta0"


def test_problem_has_theta0_not_params0():
    prob = dc.quadratic(jnp.eye(2))
    assert hasattr(prob, "theta0") and not hasattr(prob, "params0")


@pytest.mark.parametrize(
    "call",
    [
        lambda: dc.heavy_ball(0.1, 0.9),  # was (eta, beta)
        lambda: dc.rmsprop(0.1, 0.9),  # was (eta, rho)
        lambda: dc.adam(0.1, 0.9, 0.999),  # was (eta, beta, rho)
        lambda: dc.adamw(0.1, 0.9, 0.999, 1e-8, 0.01),  # was (eta, beta, rho, eps, lam)
        lambda: dc.gd(0.1, 0.01),  # was (eta, lam)
        lambda: dc.modified_field(lambda th: jnp.sum(th**2), 0.1, 1),  # was (loss, eta, order)
        lambda: dc.hvp_fd(lambda th: jnp.sum(th**2), jnp.ones(2), jnp.ones(2), 1e-3),  # was (..., eps)
        lambda: dc.principal.pf_rate(jnp.ones(2), 0.1),  # was (mu, eta)
        lambda: dc.scale_invariance.equilibrium_angle(0.1, 0.01),  # was (eta, lam)
    ],
)
def test_positional_hyperparameters_raise_type_error(call):
    with pytest.raises(TypeError):
        call()


# ----------------------------------------------------------------------------- one RK4 stepper
# the weights of classical RK4, as code (not in a docstring or a comment): a [1, 2, 2, 1] vector,
# or the combination k1 + 2 k2 + 2 k3 + k4
RK4_PATTERNS = [
    re.compile(r"[\[(]\s*1(\.0*)?\s*,\s*2(\.0*)?\s*,\s*2(\.0*)?\s*,\s*1(\.0*)?\s*[\])]"),
    re.compile(r"\+\s*2(\.0*)?\s*\*\s*\w+\s*\+\s*2(\.0*)?\s*\*\s*\w+\s*\+"),
]


def _rk4_stages(source: str):
    """Names of the functions (innermost enclosing def, or "<module>") whose code holds RK4 weights."""
    code_lines = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE):
            code_lines.setdefault(tok.start[0], []).append(tok.string)
    hits = [n for n, toks in code_lines.items() if any(p.search(" ".join(toks)) for p in RK4_PATTERNS)]
    defs = [node for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    names = set()
    for line in hits:
        enclosing = [d for d in defs if d.lineno <= line <= d.end_lineno]
        names.add(max(enclosing, key=lambda d: d.lineno).name if enclosing else "<module>")
    return names


def test_the_rk4_finder_can_fail():
    """Both RK4 copies the package had before issue 18 are found; text in docstrings is not."""
    old_adaptive = (
        "def _rk4_piece(field, y, n, eta, substeps):\n"
        "    def one(y):\n"
        "        k1 = field(y, n)\n"
        "        y = _tmap(lambda u, a, b, c, d: u + dt / 6 * (a + 2 * b + 2 * c + d), y, k1, k2, k3, k4)\n"
        "        return y\n"
    )
    old_principal = "def _rk4(field, y0, ts):\n    weights = jnp.array([1.0, 2.0, 2.0, 1.0]) / 6\n"
    assert _rk4_stages(old_adaptive) == {"one"}
    assert _rk4_stages(old_principal) == {"_rk4"}
    assert _rk4_stages('def f():\n    """weights [1, 2, 2, 1]: k1 + 2 k2 + 2 * k3 + k4 +"""\n    # (1, 2, 2, 1)\n') == set()


def test_exactly_one_rk4_stepper():
    where = {f"{name}.{fn}" for name in MODULES for fn in _rk4_stages((SRC / f"{name}.py").read_text())}
    assert where == {"integration.rk4_step"}, where
    # and every function named like an RK4 integrator lives in dyncore.integration (and uses rk4_step)
    named = {
        f"{name}.{node.name}"
        for name in MODULES
        for node in ast.walk(ast.parse((SRC / f"{name}.py").read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and re.search(r"rk4|runge", node.name, re.I)
    }
    assert named and all(q.startswith("integration.") for q in named), named
    integration = (SRC / "integration.py").read_text()
    for q in named - {"integration.rk4_step"}:
        fn = q.split(".", 1)[1]
        body = ast.get_source_segment(integration, next(
            n for n in ast.walk(ast.parse(integration)) if isinstance(n, ast.FunctionDef) and n.name == fn))
        assert "rk4_step(" in body, f"{q} must step with rk4_step"


def test_sources_hold_no_control_characters():
    """A lost backslash in a docstring (``\\t`` of ``\\theta``, ``\\a`` of ``\\alpha``) becomes a control
    character that breaks the API page's mathematics; none may be in the library or the scripts."""
    root = pathlib.Path(__file__).resolve().parents[1]
    files = sorted((root / "src" / "dyncore").glob("*.py")) + sorted((root / "benchmarks").glob("*.py"))
    bad = {f.name: sorted({hex(ord(c)) for c in f.read_text() if ord(c) < 32 and c not in "\n"})
           for f in files}
    assert not {k: v for k, v in bad.items() if v}
