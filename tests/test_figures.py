"""Slider figures: validation, static frames and HTML, the live widget, divergence marks."""

import base64
import io
import re

import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

import dyncore as dc

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDGET_KEY = "application/vnd.jupyter.widget-view+json"

A2 = jnp.diag(jnp.array([1.0, 3.0]))
THETA0 = jnp.array([1.0, -1.0])


def _loss(theta):
    return 0.5 * theta @ A2 @ theta


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _draw(ax, result, **hparams):
    ax.semilogy(np.maximum(result.loss, 1e-300))
    ax.set_title(", ".join(f"{k}={v:.3g}" for k, v in sorted(hparams.items())))
    dc.mark_divergence(ax, result.diverged_at)


def _make_figure(two_sliders: bool):
    """A figure of GD on a 2-d quadratic for 20 steps, with a trace counter on compute."""
    counter = {"traces": 0}

    def compute(eta, lam=0.0):
        counter["traces"] += 1  # Python side effect: runs only while jax traces compute
        return dc.run(dc.gd(eta, lam=lam), _loss, THETA0, 20, max_norm=1e3)

    # with lam = 0.5 and eta = 0.7, |1 - 0.7 * 3.5| = 1.45 > 1: that frame shows a divergence
    sliders = [dc.Slider("eta", [0.1, 0.4, 0.7], log=True)]
    if two_sliders:
        sliders.append(dc.Slider("lam", [0.0, 0.5]))
    fig = dc.slider_figure(compute, _draw, sliders, caption="GD on a quadratic", figsize=(3, 2), dpi=40)
    return fig, counter


@pytest.fixture(scope="module")
def one_slider():
    fig, counter = _make_figure(False)
    fig.frames  # render every grid point once
    return fig, counter


@pytest.fixture(scope="module")
def two_sliders():
    fig, counter = _make_figure(True)
    fig.frames
    return fig, counter


# ----------------------------------------------------------------------------- Slider
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="x", values=[0.5]), "at least two grid values"),
        (dict(name="x", values=[]), "at least two grid values"),
        (dict(name="x", values=[0.1, 0.3, 0.2]), "strictly increasing"),
        (dict(name="x", values=[0.1, 0.1]), "strictly increasing"),
        (dict(name="x", values=[0.0, 1.0], log=True), "log slider needs positive"),
        (dict(name="x", values=[-1.0, 1.0], log=True), "log slider needs positive"),
        (dict(name="eta", values=[0.0, 0.1, 0.2]), "eta must be > 0, got 0"),
        (dict(name="eta", values=[-0.5, 0.1]), "eta must be > 0"),
        (dict(name="beta", values=[0.5, 1.0]), "beta must be in [0, 1)"),
        (dict(name="lam", values=[-0.1, 0.1]), "lam must be >= 0"),
        (dict(name="eta", values=[0.1, 0.2], default=0.3), "default must be in [0.1, 0.2]"),
        (dict(name="x", values=[0.0, 1.0], default=-0.01), "default must be in"),
    ],
)
def test_slider_validation(kwargs, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        dc.Slider(**kwargs)


def test_slider_defaults_and_labels():
    s = dc.Slider("eta", [0.1, 0.2, 0.3, 0.4])
    assert s.start == 0.3  # the middle grid value (index len // 2)
    assert dc.Slider("eta", [0.1, 0.2, 0.3], default=0.25).start == 0.25
    assert s.text == "η" and dc.Slider("lam", [0, 1]).text == "λ"
    assert dc.Slider("eta", [0.1, 0.2], label="step").text == "step"
    np.testing.assert_array_equal(s.grid, [0.1, 0.2, 0.3, 0.4])
    dc.Slider("lam", [0.0, 0.1])  # lam = 0 is valid
    dc.Slider("beta", [0.0, 0.9])  # beta = 0 is valid


# ----------------------------------------------------------------------------- frames
@pytest.mark.parametrize("which,n_frames", [("one", 3), ("two", 6)])
def test_frames_are_pngs_one_per_grid_point(which, n_frames, one_slider, two_sliders):
    fig, counter = one_slider if which == "one" else two_sliders
    frames = fig.frames
    assert len(frames) == n_frames == int(np.prod([len(s.grid) for s in fig.sliders]))
    assert len(fig.grid_points) == n_frames
    for f in frames:
        assert base64.b64decode(f).startswith(PNG_MAGIC)
    # different hyper-parameters give different pictures
    assert len(set(frames)) == n_frames


def test_frame_order_matches_row_major_index_of_the_html(two_sliders):
    fig, counter = two_sliders
    # the page picks frame idx = i_eta * len(lam grid) + i_lam
    assert fig.grid_points[1 * 2 + 1] == {"eta": 0.4, "lam": 0.5}
    png = fig.render(eta=0.4, lam=0.5)
    assert png.startswith(PNG_MAGIC)
    # same picture (the static frames are only compressed harder)
    np.testing.assert_array_equal(_pixels(base64.b64decode(fig.frames[1 * 2 + 1])), _pixels(png))


def test_frames_do_not_depend_on_what_was_drawn_before(two_sliders):
    fig, _ = two_sliders
    assert int(dc.run(dc.gd(0.7, lam=0.5), _loss, THETA0, 20, max_norm=1e3).diverged_at) > 0
    diverging = fig.render(eta=0.7, lam=0.5)  # draws the "diverged" label
    quiet = fig.render(eta=0.1, lam=0.0)
    np.testing.assert_array_equal(_pixels(quiet), _pixels(base64.b64decode(fig.frames[0])))
    np.testing.assert_array_equal(_pixels(diverging), _pixels(base64.b64decode(fig.frames[-1])))
    assert not np.array_equal(_pixels(diverging), _pixels(quiet))


def test_draw_gets_a_grid_of_axes_for_several_panels():
    seen = []

    def draw(axes, result, **hparams):
        seen.append(axes)
        for ax in np.ravel(axes):
            ax.plot([0.0, 1.0], [0.0, float(result)])

    single = dc.slider_figure(lambda eta: 2 * eta, draw, [dc.Slider("eta", [0.1, 0.2])], figsize=(2, 2), dpi=20)
    grid = dc.slider_figure(
        lambda eta: 2 * eta, draw, [dc.Slider("eta", [0.1, 0.2])], nrows=2, ncols=3, figsize=(6, 4), dpi=20
    )
    row = dc.slider_figure(lambda eta: 2 * eta, draw, [dc.Slider("eta", [0.1, 0.2])], ncols=2, figsize=(2, 2), dpi=20)
    for f in (single, grid, row):
        assert f.render().startswith(PNG_MAGIC)
    assert isinstance(seen[0], Axes)
    assert np.shape(seen[1]) == (2, 3) and all(isinstance(a, Axes) for a in np.ravel(seen[1]))
    assert np.shape(seen[2]) == (2,)
    with pytest.raises(ValueError, match="ncols must be a positive integer"):
        dc.slider_figure(lambda eta: eta, draw, [dc.Slider("eta", [0.1, 0.2])], ncols=0)
    with pytest.raises(ValueError, match="nrows must be a positive integer"):
        dc.slider_figure(lambda eta: eta, draw, [dc.Slider("eta", [0.1, 0.2])], nrows=1.5)


@pytest.mark.parametrize("which,n_sliders", [("one", 1), ("two", 2)])
def test_html_is_self_contained_with_one_range_input_per_slider(which, n_sliders, one_slider, two_sliders):
    fig, _ = one_slider if which == "one" else two_sliders
    page = fig.html()
    assert page.count('<input type="range"') == n_sliders
    # self-contained: no remote resource (look outside the base64 image data, where any
    # four letters can occur by chance), every image source an inline data URI
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", page)
    assert "http" not in text and "://" not in text
    assert re.findall(r'src="([^"]*)"', text) == ["data:"]
    for f in fig.frames:
        assert f in page
    assert "<script>" in page and "GD on a quadratic" in page
    # the image shown first is the frame of the default values (the middle of each grid)
    start = dict(fig.grid_points[0])
    start.update({s.name: s.start for s in fig.sliders})
    first = fig.frames[fig.grid_points.index(start)]
    assert re.search(r'<img src="data:image/png;base64,([^"]+)"', page).group(1) == first


def test_render_validates_hyperparameters(one_slider):
    fig, _ = one_slider
    with pytest.raises(ValueError, match=re.escape("eta must be > 0, got -1")):
        fig.render(eta=-1.0)
    with pytest.raises(ValueError, match="unknown slider"):
        fig.render(beta=0.5)


def test_time_update_reports_the_median_move_in_milliseconds(monkeypatch):
    """time_update times `repeats` slider moves (each to another grid value) and returns their median, in ms.

    A fake clock stands in for time.perf_counter inside dyncore.figures only, so the number can be
    predicted exactly: moves of 10, 30 and 20 ms have the median 20 ms.
    """
    import types

    import dyncore.figures as figures_module

    fig, _ = _make_figure(True)
    rendered = []
    real_render = fig.render

    def spy(**hparams):
        rendered.append(hparams)
        return real_render(**hparams)

    monkeypatch.setattr(fig, "render", spy)
    durations = iter([0.010, 0.030, 0.020])
    clock = {"t": 100.0, "started": False}

    def perf_counter():  # start of a move: the current time; its end: start + the next duration
        if clock["started"]:
            clock["t"] += next(durations)
        clock["started"] = not clock["started"]
        return clock["t"]

    monkeypatch.setattr(figures_module, "time", types.SimpleNamespace(perf_counter=perf_counter))
    assert fig.time_update(repeats=3) == pytest.approx(20.0, rel=1e-12)
    # one untimed render at the start values (compilation), then one move per repeat, alternating
    # sliders and stepping through each grid
    assert rendered == [{}, {"eta": 0.1}, {"lam": 0.5}, {"eta": 0.7}]
    assert next(durations, None) is None  # every move was timed


@pytest.mark.perf
def test_slider_moves_never_retrace_or_recompile(two_sliders, monkeypatch):
    """compute is traced and compiled once per figure: frames, renders, compute and time_update reuse it."""
    fig, counter = two_sliders
    fig.frames
    fig.render(eta=0.7, lam=0.5)
    fig.compute(eta=0.4, lam=0.0)
    monkeypatch.setenv("DYNCORE_FIGURES", "live")
    fig._repr_mimebundle_()
    ms = fig.time_update(repeats=4)
    assert counter["traces"] == 1  # the hyper-parameters are traced: one trace for every value
    assert fig._compute._cache_size() == 1  # and one compiled executable
    assert 0 < ms < 5000  # a slider move takes well under a few seconds even on a loaded machine


def test_three_sliders_index_frames_row_major_and_show_three_inputs():
    """With three sliders the JS index (i * n1 + j) * n2 + k must match the frame order."""

    def compute(a, b, c):
        return 100 * a + 10 * b + c

    def draw(ax, result, **hp):
        ax.set_title(f"{float(result):.0f}")

    sliders = [dc.Slider("a", [1.0, 2.0]), dc.Slider("b", [1.0, 2.0, 3.0]), dc.Slider("c", [1.0, 2.0])]
    fig = dc.slider_figure(compute, draw, sliders, figsize=(1.5, 1), dpi=30)
    assert len(fig.grid_points) == 12
    i, j, k = 1, 2, 0
    assert fig.grid_points[(i * 3 + j) * 2 + k] == {"a": 2.0, "b": 3.0, "c": 1.0}
    np.testing.assert_array_equal(
        _pixels(base64.b64decode(fig.frames[(i * 3 + j) * 2 + k])), _pixels(fig.render(a=2.0, b=3.0, c=1.0))
    )
    page = fig.html()
    assert page.count('<input type="range"') == 3
    assert "idx=idx*shape[i]+parseInt(inputs[i].value)" in page and "[2, 3, 2]" in page


# ----------------------------------------------------------------------------- MIME bundle
def test_mimebundle_static_only(one_slider, monkeypatch):
    fig, _ = one_slider
    monkeypatch.setenv("DYNCORE_FIGURES", "static")
    bundle = fig._repr_mimebundle_()
    assert "text/html" in bundle and '<input type="range"' in bundle["text/html"]
    assert WIDGET_KEY not in bundle
    assert bundle["text/plain"] == "<SliderFigure: eta>"


def test_mimebundle_live_only(two_sliders, monkeypatch):
    fig, _ = two_sliders
    monkeypatch.setenv("DYNCORE_FIGURES", "live")
    bundle = fig._repr_mimebundle_()
    assert WIDGET_KEY in bundle
    assert "text/html" not in bundle
    assert bundle["text/plain"] == "<SliderFigure: eta, lam>"


def test_widget_bundle_without_repr_mimebundle_as_in_ipywidgets_7():
    """Colab ships ipywidgets 7, whose widgets have no _repr_mimebundle_: reference the model instead."""
    from dyncore.figures import _widget_bundle

    class OldWidget:  # what an ipywidgets 7 widget offers
        model_id = "abc123"

    assert _widget_bundle(OldWidget()) == {WIDGET_KEY: {"version_major": 2, "version_minor": 0, "model_id": "abc123"}}

    class NewWidget(OldWidget):
        def _repr_mimebundle_(self, **kwargs):
            return {WIDGET_KEY: {"model_id": self.model_id}, "text/plain": "VBox()"}

    assert _widget_bundle(NewWidget())[WIDGET_KEY] == {"model_id": "abc123"}


# ----------------------------------------------------------------------------- helpers
def test_mark_divergence_writes_only_after_divergence():
    ax = Figure().add_subplot()
    assert dc.mark_divergence(ax, -1) is False
    assert dc.mark_divergence(ax, jnp.asarray(-1)) is False
    assert len(ax.texts) == 0
    assert dc.mark_divergence(ax, jnp.asarray(7), "SGD") is True
    assert [t.get_text() for t in ax.texts] == ["SGD diverged at step 7"]
    assert dc.mark_divergence(ax, 0) is True  # step 0 is a divergence too
    assert ax.texts[-1].get_text() == "GD diverged at step 0"


def test_valid_prefix():
    x = np.arange(10.0)
    np.testing.assert_array_equal(dc.valid_prefix(x, -1), x)
    np.testing.assert_array_equal(dc.valid_prefix(x, jnp.asarray(4)), x[:4])
    np.testing.assert_array_equal(dc.valid_prefix(x, 0), x[:0])
    traj = dc.Trajectory(jnp.arange(6.0), jnp.arange(6.0), jnp.asarray(3))
    np.testing.assert_array_equal(dc.valid_prefix(np.asarray(traj.params), traj.diverged_at), [0.0, 1.0, 2.0])


# ----------------------------------------------------------------------------- text cache
def _text_heavy_figure():
    """Two panels with tick labels, a rotated y label, mathtext, two lines, a legend and a suptitle."""

    def compute(eta):
        return dc.run(dc.gd(eta), _loss, THETA0, 30)

    def draw(axes, result, eta):
        for ax in axes:
            ax.semilogy(np.maximum(result.loss, 1e-300), label=r"$L(\theta_k)$")
            ax.set(xlabel="step k", ylabel="loss (rotated label)")
            ax.legend(loc="upper right")
        axes[0].text(0.5, 0.5, "rotated", rotation=30, transform=axes[0].transAxes)
        axes[1].text(0.2, 0.2, "two\nlines", transform=axes[1].transAxes)  # uses the line gap
        axes[0].figure.suptitle(f"η = {eta:.3g}")

    return dc.slider_figure(compute, draw, [dc.Slider("eta", [0.1, 0.2, 0.3])], ncols=2, dpi=60)


def test_text_cache_draws_the_same_picture_as_matplotlib():
    fig = _text_heavy_figure()
    cache = fig._canvas.text_cache
    cached = _pixels(fig.render(eta=0.2)).astype(float)
    assert cache.enabled and cache.misses > 20  # every distinct text went through the cache
    cache.enabled = False
    plain = _pixels(fig.render(eta=0.2)).astype(float)
    cache.enabled = True
    # the cache rasterizes each text at its own position modulo two pixels: the pictures agree up
    # to 8-bit rounding where glyphs of one string overlap (exactly, with matplotlib < 3.11)
    diff = np.abs(cached - plain)
    print(f"mean |difference| {diff.mean():.4f} grey levels, max {diff.max():.0f}")
    assert diff.mean() < 0.01 and diff.max() <= 2
    # a control that the comparison can fail: the same frame without its texts differs much more
    for text in fig._fig.findobj(lambda a: hasattr(a, "get_text") and a.get_text()):
        text.set_visible(False)
    fig._canvas.draw()
    bare = np.asarray(fig._canvas.buffer_rgba())[..., :3].astype(float)
    assert np.abs(bare - plain).mean() > 1.0 > 50 * diff.mean()


@pytest.mark.perf
def test_text_cache_hits_when_a_frame_repeats():
    fig = _text_heavy_figure()
    cache = fig._canvas.text_cache
    first = fig.render(eta=0.1)
    assert fig.render(eta=0.3) != first
    before = cache.misses, cache.hits
    again = fig.render(eta=0.1)
    assert again == first  # a repeated frame is the same picture ...
    assert cache.misses == before[0] and cache.hits > before[1]  # ... with every text from the cache


def test_text_cache_falls_back_to_matplotlib_when_its_internals_fail(monkeypatch):
    fig = _text_heavy_figure()
    cache = fig._canvas.text_cache
    cache.enabled = False
    plain = fig.render(eta=0.2)
    cache.enabled = True

    def broken(*args, **kwargs):
        raise AttributeError("a matplotlib without draw_text_image")

    monkeypatch.setattr(type(cache), "_draw", broken)
    assert fig.render(eta=0.2) == plain  # drawn by matplotlib itself
    assert not cache.enabled  # and the cache stays off for this figure


def test_text_cache_font_metrics_lay_out_every_text_as_matplotlib_does():
    fig = _text_heavy_figure()
    cache = fig._canvas.text_cache
    fig.render(eta=0.2)
    renderer = fig._canvas.get_renderer()
    texts = fig._fig.findobj(lambda a: hasattr(a, "_get_layout") and a.get_text())
    cached = [t._get_layout(renderer) for t in texts]
    cache.enabled = False  # the hook answers "unknown": matplotlib reads the font tables itself
    plain = [t._get_layout(renderer) for t in texts]
    cache.enabled = True
    assert len(texts) > 20
    for t, a, b in zip(texts, cached, plain):
        assert repr(a) == repr(b), t.get_text()  # bounding box, line metrics and offsets, exactly
    if tuple(int(v) for v in matplotlib.__version__.split(".")[:2]) >= (3, 11):
        assert cache.metrics  # matplotlib asked the cache (older versions never do)
        assert all(None not in v for v in cache.metrics.values())


def test_compute_gives_the_numbers_of_the_figure(one_slider):
    """Numbers read beside a figure are those of compute at the slider values (its trace count: below)."""
    fig, _ = one_slider
    got = fig.compute(eta=0.4)
    want = dc.run(dc.gd(0.4, lam=0.0), _loss, THETA0, 20, max_norm=1e3)
    np.testing.assert_allclose(np.asarray(got.loss), np.asarray(want.loss), rtol=1e-12)
    with pytest.raises(ValueError, match="unknown slider"):
        fig.compute(beta=0.5)


def test_book_style_applies_and_slider_figures_render_under_it_without_warnings():
    """use_book_style sets the palette and layout; slider figures keep their own layout quietly
    (a figure created under constrained layout and then tight_layout-ed warned on every page)."""
    import warnings

    import matplotlib as mpl

    with mpl.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("error")
        dc.figures.use_book_style()
        assert mpl.rcParams["figure.constrained_layout.use"]
        assert mpl.rcParams["axes.prop_cycle"].by_key()["color"][0] == dc.figures.PALETTE["black"]
        fig = dc.slider_figure(lambda eta: np.arange(4) * eta, lambda ax, out, eta: ax.plot(out),
                               [dc.Slider("eta", [0.1, 0.2])])
        assert len(fig.frames) == 2
