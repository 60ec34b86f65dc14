"""Figures with sliders that work in a live kernel *and* on the static web page.

:func:`slider_figure` turns two functions into an interactive figure:

* ``compute(**hparams)`` does the numerics (it is ``jax.jit``-compiled once; the hyper-parameters
  are traced, so moving a slider never recompiles);
* ``draw(axes, result, **hparams)`` draws ``result`` on matplotlib axes that the figure
  keeps from frame to frame (cleared of their artists before each frame).

The returned :class:`SliderFigure` displays as

* **live sliders** (ipywidgets) in Jupyter, Colab or VS Code, where each move recomputes and
  redraws (a PNG into an ``Image`` widget, so no interactive matplotlib backend is needed); and
* **static sliders** on the HTML page, where no kernel runs: the figure is pre-rendered at build
  time for every combination of the sliders' grid values (one to four sliders) and switched by
  ``<input type="range">`` controls in self-contained HTML and JavaScript (no CDN, no kernel).

Both representations go in one MIME bundle: notebook front ends that know widgets show the live
one, the book (configured to prefer ``text/html``) and any front end without widgets show the
static one. Set the environment variable ``DYNCORE_FIGURES`` to ``static`` or ``live`` to emit
only one of them.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import fontManager, get_font
from PIL import Image as PILImage

from .validation import RANGES, check_hparams

__all__ = [
    "Slider",
    "SliderFigure",
    "slider_figure",
    "valid_prefix",
    "mark_divergence",
    "PALETTE",
    "BOOK_STYLE",
    "use_book_style",
]

PALETTE = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}
"""The Okabe–Ito colours, safe for the common colour-vision deficiencies. The book draws the
discrete method (GD, SGD, Adam, ...) in black, the continuous model in blue, a competing model in
vermillion, and further curves in the order of :data:`BOOK_STYLE`'s colour cycle."""

BOOK_STYLE = {
    "axes.prop_cycle": cycler(
        color=[PALETTE[c] for c in ("black", "blue", "vermillion", "green", "orange", "sky", "purple", "yellow")]
    ),
    "figure.figsize": (7.0, 3.2),
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "font.size": 10.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "figure.constrained_layout.use": True,
}
"""matplotlib settings of every figure in the book: the colour cycle of :data:`PALETTE`, a page-width
size, legible fonts and light grids."""

MAX_SLIDERS = 4
"""At most this many sliders per figure (the static page pre-renders the product of their grids)."""

MAX_FRAMES = 150
"""At most this many pre-rendered frames per figure (page size and build time grow with it)."""


@dataclass(frozen=True)
class Slider:
    """One slider of a :func:`slider_figure`.

    Attributes:
      name: the keyword passed to ``compute`` and ``draw`` (``"eta"``, ``"lam"``, ...).
      values: the grid of values pre-rendered for the static page (3 to 15 values is typical);
        the live slider spans ``[min(values), max(values)]`` continuously.
      label: text shown next to the slider (default: the Greek symbol for the book's names).
      default: the initial value (default: the middle grid value).
      log: a logarithmic live slider (for learning rates spanning decades).

    Example:

    >>> s = Slider("eta", [0.1, 0.2, 0.4], default=0.4)
    >>> s.grid.tolist(), s.start
    ([0.1, 0.2, 0.4], 0.4)
    """

    name: str
    values: Sequence[float]
    label: str | None = None
    default: float | None = None
    log: bool = False

    def __post_init__(self):
        vals = np.asarray(self.values, dtype=float)
        if vals.ndim != 1 or vals.size < 2:
            raise ValueError(f"slider {self.name!r} needs at least two grid values, got {self.values!r}")
        if not np.all(np.diff(vals) > 0):
            raise ValueError(f"slider {self.name!r}: values must be strictly increasing")
        if self.log and not np.all(vals > 0):
            raise ValueError(f"slider {self.name!r}: a log slider needs positive values")
        if self.name in RANGES:
            check_hparams(**{self.name: vals})
        if self.default is not None and not (vals[0] <= self.default <= vals[-1]):
            raise ValueError(
                f"slider {self.name!r}: default must be in [{vals[0]:g}, {vals[-1]:g}], got {self.default:g}"
            )

    @property
    def grid(self) -> np.ndarray:
        return np.asarray(self.values, dtype=float)

    @property
    def start(self) -> float:
        return float(self.default) if self.default is not None else float(self.grid[len(self.grid) // 2])

    @property
    def text(self) -> str:
        symbols = {"eta": "η", "lam": "λ", "beta": "β", "rho": "ρ", "eps": "ε", "h": "h"}
        return self.label or symbols.get(self.name, self.name)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _font_key(prop) -> tuple:
    return (tuple(prop.get_family()), prop.get_style(), prop.get_variant(), prop.get_weight(),
            prop.get_stretch(), prop.get_size_in_points(), prop.get_file(), prop.get_math_fontfamily())


class _TextCache:
    """Rasterize each distinct text once per figure, then paste its coverage mask.

    Most of a slider move is matplotlib drawing text: every frame lays out and rasterizes every
    tick label, legend entry and title glyph by glyph, although most of them are the same
    strings as in the last frame. This cache keys a text by its string, font, angle and
    position modulo two pixels, renders it once into a scratch Agg buffer with matplotlib's own
    ``draw_text`` at the same position modulo two pixels, and afterwards composites the stored
    coverage mask with the renderer's ``draw_text_image`` (the colour, alpha and clip box still
    come from the current graphics context). The picture agrees with an uncached draw up to 8-bit
    rounding where the glyphs of one string overlap (``tests/test_figures.py`` compares them).
    Anything unexpected (TeX text, a matplotlib whose renderer lacks these hooks) falls back to
    the ordinary drawing. It also keeps the line metrics of each font, which matplotlib 3.11
    would otherwise look up in the font's tables for every text it lays out.
    """

    MAX_ENTRIES = 4000

    def __init__(self) -> None:
        self.masks: dict[tuple, tuple[np.ndarray, int, int] | None] = {}
        self.metrics: dict[tuple, tuple[float | None, float | None, float | None]] = {}
        self._dpi = 72.0
        self.hits = 0
        self.misses = 0
        self.enabled = True

    def install(self, renderer: RendererAgg) -> RendererAgg:
        """Route ``renderer.draw_text`` through the cache (once per renderer instance)."""
        self._dpi = renderer.dpi
        if getattr(renderer, "_dyncore_text_cache", None) is not self:
            original = renderer.draw_text

            def draw_text(gc, x, y, s, prop, angle, ismath=False, mtext=None):
                if not self.enabled or ismath == "TeX" or not s:
                    return original(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
                try:
                    self._draw(renderer, gc, x, y, s, prop, angle, ismath, mtext)
                except Exception:  # a matplotlib without these internals: draw as usual from now on
                    self.enabled = False
                    original(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

            renderer.draw_text = draw_text
            # matplotlib >= 3.11 asks the renderer for a font's line metrics before laying out a
            # text (a hook of its PDF/PS backends); found from the font tables on every call
            # otherwise, which costs a quarter of a redraw
            renderer._get_font_height_metrics = self._font_height_metrics
            renderer._dyncore_text_cache = self
        return renderer

    def _font_height_metrics(self, prop) -> tuple[float | None, float | None, float | None]:
        """Ascent, descent and line gap of the font of ``prop`` (as ``Text._get_layout`` computes them), cached."""
        if not self.enabled:
            return None, None, None  # matplotlib measures them itself
        key = (_font_key(prop), self._dpi)
        if key not in self.metrics:
            self.metrics[key] = None, None, None  # also if the font has neither table, as in matplotlib
            try:
                font = get_font(fontManager._find_fonts_by_props(prop))
                scale = prop.get_size_in_points() * self._dpi / 72 / font.get_sfnt_table("head")["unitsPerEm"]
                for table, gap, ascent, descent in (("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
                                                   ("hhea", "lineGap", "ascent", "descent")):
                    values = font.get_sfnt_table(table)
                    if values is not None:
                        self.metrics[key] = values[ascent] * scale, -values[descent] * scale, values[gap] * scale
                        break
            except Exception:  # a matplotlib without these internals: it measures the font itself
                pass
        return self.metrics[key]

    def _draw(self, renderer, gc, x, y, s, prop, angle, ismath, mtext) -> None:
        # the scratch buffer places the text at the same fractional position and at integer
        # coordinates of the same parity (matplotlib < 3.11 rounds to whole pixels, half to
        # even), so it is rasterized exactly as it would be in place; y points down here
        xi, yi = math.floor(x), math.floor(y)
        features = mtext.get_fontfeatures() if hasattr(mtext, "get_fontfeatures") else None
        language = mtext.get_language() if hasattr(mtext, "get_language") else None
        key = (s, _font_key(prop), float(angle), ismath, x - xi, y - yi, xi % 2, yi % 2, bool(gc.get_antialiased()),
               renderer.dpi, None if features is None else tuple(features), language)
        if key not in self.masks:
            self.misses += 1
            if len(self.masks) >= self.MAX_ENTRIES:
                self.masks.clear()
            self.masks[key] = self._rasterize(renderer, s, prop, angle, ismath, mtext, x - xi + xi % 2,
                                              y - yi + yi % 2, gc.get_antialiased())
        else:
            self.hits += 1
        entry = self.masks[key]
        if entry is not None:
            mask, left, bottom = entry
            renderer._renderer.draw_text_image(mask, xi - xi % 2 + left, yi - yi % 2 + bottom, 0, gc)

    @staticmethod
    def _rasterize(renderer, s, prop, angle, ismath, mtext, dx, dy, antialiased):
        """Draw ``s`` in black on a transparent scratch buffer at ``(r + dx, r + dy)``, ``r`` even.

        Returns the coverage mask and its left column and bottom row (exclusive) relative to
        ``(r, r)``, or None for a text without ink.
        """
        w, h, d = renderer.get_text_width_height_descent(s, prop, ismath)
        r = 2 * (int(np.ceil(np.hypot(w, h + d))) // 2 + 3)  # beyond the text at any angle; even
        scratch = RendererAgg(2 * r + 2, 2 * r + 2, renderer.dpi)
        gc = scratch.new_gc()
        gc.set_foreground("black")
        gc.set_alpha(1.0)
        gc.set_antialiased(antialiased)
        RendererAgg.draw_text(scratch, gc, r + dx, r + dy, s, prop, angle, ismath=ismath, mtext=mtext)
        gc.restore()
        alpha = np.asarray(scratch.buffer_rgba())[..., 3]
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        if rows.size == 0:
            return None
        mask = np.ascontiguousarray(alpha[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
        # draw_text_image takes the left column and the row just below the bitmap (y down)
        return mask, int(cols[0]) - r, int(rows[-1]) + 1 - r


class _CachedTextCanvas(FigureCanvasAgg):
    """An Agg canvas whose renderer draws text through a :class:`_TextCache`."""

    def __init__(self, figure):
        super().__init__(figure)
        self.text_cache = _TextCache()

    def get_renderer(self, *args, **kwargs):
        return self.text_cache.install(super().get_renderer(*args, **kwargs))


class SliderFigure:
    """An interactive figure; see :func:`slider_figure`. Display it as the last line of a cell."""

    def __init__(self, compute, draw, sliders, *, ncols, nrows, figsize, dpi, caption):
        self.sliders: tuple[Slider, ...] = tuple(sliders)
        self._compute = jax.jit(compute)
        self._draw = draw
        self.figsize = figsize
        self.dpi = dpi
        self.caption = caption
        self._fig = Figure(figsize=figsize, dpi=dpi, layout="none")  # laid out once, by tight_layout below
        self._canvas = _CachedTextCanvas(self._fig)
        axes = self._fig.subplots(nrows, ncols, squeeze=False)
        self._axes = axes[0, 0] if nrows * ncols == 1 else (axes[0] if nrows == 1 else axes)
        self._laid_out = False
        self._frames: list[str] | None = None

    def _clear(self) -> None:
        """Remove what the last frame drew but keep the axes, their ticks and the layout.

        Re-creating axes and ticks is what makes a matplotlib redraw slow; reusing them keeps a
        slider move at tens of milliseconds.
        """
        for ax in self._fig.axes:
            for artist in [*ax.lines, *ax.collections, *ax.texts, *ax.patches, *ax.images, *ax.artists]:
                artist.remove()
            if ax.get_legend() is not None:
                ax.get_legend().remove()
            ax.set_title("")
            ax.set_prop_cycle(None)  # every frame starts the colour cycle afresh
            ax.relim()
            ax.set_autoscale_on(True)

    def _freeze_axis_labels(self) -> None:
        """Pin every x-axis label where the first frame put it.

        Matplotlib otherwise re-measures all tick labels on every draw to place the axis labels,
        a noticeable part of a redraw. The x tick labels keep their height from frame to frame, so
        their axis label can stay put; y tick labels change width with the data ("5" vs "−1400"),
        so the y-axis labels are still placed on every frame.
        """
        for ax in self._fig.axes:
            if ax.xaxis._autolabelpos:  # position: (x in axes coordinates, y in pixels)
                x, y = ax.xaxis.label.get_position()
                ax.xaxis.set_label_coords(x, ax.transAxes.inverted().transform((0.0, y))[1])

    # -- rendering -------------------------------------------------------------------------
    def render(self, **hparams: float) -> bytes:
        """Compute and draw at the given hyper-parameters; return the PNG bytes.

        Missing hyper-parameters take their slider's start value. Raises ``ValueError`` for an
        unknown name or a value outside the book's valid range (e.g. ``eta <= 0``).
        """
        return self._render(hparams, compress_level=1)

    def _values(self, hparams: dict[str, float]) -> dict[str, float]:
        values = {s.name: s.start for s in self.sliders}
        unknown = set(hparams) - set(values)
        if unknown:
            raise ValueError(f"unknown slider name(s) {sorted(unknown)}; sliders are {sorted(values)}")
        values.update({k: float(v) for k, v in hparams.items()})
        check_hparams(**{k: v for k, v in values.items() if k in RANGES})
        return values

    def compute(self, **hparams: float):
        """The figure's ``compute`` result at the given hyper-parameters, on the host.

        It calls the figure's own jitted function, so numbers read beside the figure (a check on
        some of its settings) cost no second compilation. Missing hyper-parameters and errors as
        in :meth:`render`.
        """
        values = self._values(hparams)
        return jax.device_get(self._compute(**{k: jnp.asarray(v) for k, v in values.items()}))

    def _render(self, hparams: dict[str, float], compress_level: int) -> bytes:
        values = self._values(hparams)
        result = self.compute(**values)
        self._clear()
        self._draw(self._axes, result, **values)
        if not self._laid_out:  # lay out once, on the first frame: every frame then has the same geometry
            self._fig.tight_layout()
            self._canvas.draw()
            self._freeze_axis_labels()
            self._laid_out = True
        # Agg render + PIL encoding: at compress level 1 encoding takes a few ms, where savefig's
        # default costs ~50 ms, half of a slider move's budget. Static frames use level 9 (smaller).
        self._canvas.draw()
        width, height = self._canvas.get_width_height()
        image = PILImage.frombuffer("RGBA", (width, height), self._canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="PNG", compress_level=compress_level)
        return buf.getvalue()

    def time_update(self, repeats: int = 5) -> float:
        """Median wall time in milliseconds of one slider move (recompute + redraw), after compilation."""
        self.render()
        times = []
        for i in range(repeats):
            s = self.sliders[i % len(self.sliders)]
            t0 = time.perf_counter()
            self.render(**{s.name: float(s.grid[i % len(s.grid)])})
            times.append(time.perf_counter() - t0)
        return 1e3 * float(np.median(times))

    @property
    def grid_points(self) -> list[dict[str, float]]:
        """Every combination of grid values, in the order of the static frames."""
        names = [s.name for s in self.sliders]
        return [dict(zip(names, map(float, combo))) for combo in itertools.product(*(s.grid for s in self.sliders))]

    @property
    def frames(self) -> list[str]:
        """Base64 PNG of every grid point (rendered once, then cached)."""
        if self._frames is None:
            self._frames = [
                base64.b64encode(self._render(p, compress_level=9)).decode("ascii") for p in self.grid_points
            ]
        return self._frames

    # -- static HTML -----------------------------------------------------------------------
    def html(self) -> str:
        """Self-contained HTML/JS with range inputs over the pre-rendered frames (no kernel, no CDN)."""
        uid = "dcfig-" + uuid.uuid4().hex[:12]
        shape = [len(s.grid) for s in self.sliders]
        starts = [int(np.argmin(np.abs(s.grid - s.start))) for s in self.sliders]
        flat0 = int(np.ravel_multi_index(starts, shape))
        controls = []
        for i, s in enumerate(self.sliders):
            labels = json.dumps([_fmt(v) for v in s.grid])
            controls.append(
                f'<label style="display:flex;align-items:center;gap:0.5em;margin:0.2em 0;font-family:sans-serif">'
                f'<span style="min-width:2.5em">{html.escape(s.text)}</span>'
                f'<input type="range" min="0" max="{len(s.grid) - 1}" step="1" value="{starts[i]}" '
                f'data-labels=\'{labels}\' style="flex:0 1 16em" aria-label="{html.escape(s.text)}">'
                f'<output style="min-width:4em;font-family:monospace">{_fmt(s.grid[starts[i]])}</output></label>'
            )
        frames = json.dumps(["data:image/png;base64," + f for f in self.frames])
        caption = (
            f'<div style="font-size:0.85em;color:#555;font-family:sans-serif">{html.escape(self.caption)} '
            f"(pre-computed at {len(self.frames)} parameter values; run the notebook for continuous sliders)</div>"
        )
        script = (
            "(function(){"
            f'var root=document.getElementById("{uid}");var frames={frames};var shape={json.dumps(shape)};'
            'var inputs=root.querySelectorAll("input[type=range]");var img=root.querySelector("img");'
            "function update(){var idx=0;for(var i=0;i<inputs.length;i++){"
            "idx=idx*shape[i]+parseInt(inputs[i].value);"
            "var labels=JSON.parse(inputs[i].getAttribute('data-labels'));"
            "inputs[i].nextElementSibling.textContent=labels[parseInt(inputs[i].value)];}"
            "img.src=frames[idx];}"
            'for(var i=0;i<inputs.length;i++){inputs[i].addEventListener("input",update);}'
            "})();"
        )
        return (
            f'<div id="{uid}" class="dyncore-slider-figure">'
            + "".join(controls)
            + f'<img src="data:image/png;base64,{self.frames[flat0]}" alt="{html.escape(self.caption)}" '
            f'style="max-width:100%;height:auto">'
            + caption
            + f"<script>{script}</script></div>"
        )

    # -- live widget -----------------------------------------------------------------------
    def widget(self):
        """The live ipywidgets version: sliders and an ``Image`` redrawn on every move."""
        import ipywidgets as widgets

        controls = []
        for s in self.sliders:
            lo, hi = float(s.grid[0]), float(s.grid[-1])
            common = dict(description=s.text, value=s.start, continuous_update=True, readout_format=".4g")
            if s.log:
                controls.append(
                    widgets.FloatLogSlider(min=np.log10(lo), max=np.log10(hi), step=(np.log10(hi) - np.log10(lo)) / 200, base=10, **common)
                )
            else:
                controls.append(widgets.FloatSlider(min=lo, max=hi, step=(hi - lo) / 200, **common))
        image = widgets.Image(format="png", value=self.render())
        status = widgets.HTML(value=f"<small>{html.escape(self.caption)}</small>")

        def on_change(_change):
            values = {s.name: c.value for s, c in zip(self.sliders, controls)}
            t0 = time.perf_counter()
            image.value = self.render(**values)
            status.value = f"<small>{html.escape(self.caption)} · redrawn in {1e3 * (time.perf_counter() - t0):.0f} ms</small>"

        for c in controls:
            c.observe(on_change, names="value")
        return widgets.VBox([*controls, image, status])

    def _repr_mimebundle_(self, include=None, exclude=None):
        mode = os.environ.get("DYNCORE_FIGURES", "auto").lower()
        bundle: dict[str, Any] = {"text/plain": f"<SliderFigure: {', '.join(s.name for s in self.sliders)}>"}
        if mode in ("auto", "static"):
            bundle["text/html"] = self.html()
        if mode in ("auto", "live"):
            try:
                w = self.widget()
                bundle.update(_widget_bundle(w))
            except ImportError:  # no ipywidgets: the static version still works
                pass
            bundle["text/plain"] = f"<SliderFigure: {', '.join(s.name for s in self.sliders)}>"
        return bundle


def _widget_bundle(w) -> dict[str, Any]:
    """The widget-view MIME entry of ``w``, for ipywidgets 8 and 7 (Colab ships 7)."""
    if hasattr(w, "_repr_mimebundle_"):  # ipywidgets >= 8
        return w._repr_mimebundle_() or {}
    # ipywidgets 7 displays through _ipython_display_; the view it sends is this reference
    view = {"version_major": 2, "version_minor": 0, "model_id": w.model_id}
    return {"application/vnd.jupyter.widget-view+json": view}


def slider_figure(
    compute: Callable[..., Any],
    draw: Callable[..., None],
    sliders: Sequence[Slider],
    *,
    ncols: int = 1,
    nrows: int = 1,
    caption: str = "",
    figsize: tuple[float, float] = (6.4, 3.4),
    dpi: int = 72,
) -> SliderFigure:
    """Make a figure with one to four sliders that works live and on the static page.

    Args:
      compute: ``compute(**hparams) -> pytree of arrays``; jitted once by this function, with every
        hyper-parameter traced (so it must not branch in Python on their values).
      draw: ``draw(axes, result, **hparams)`` draws ``result`` (NumPy arrays) on the axes: one
        ``Axes`` for a single panel, else an array of ``nrows x ncols`` axes (the figure is
        ``axes[0].figure``, e.g. for a ``suptitle``). The axes are created once and cleared of
        their artists before each frame, so ``draw`` sets limits, scales, labels and legends
        every time. For speed, give legends a fixed ``loc`` and turn off minor ticks on log
        axes. Show divergence with :func:`mark_divergence`.
      sliders: one to ``MAX_SLIDERS`` (4) :class:`Slider` objects. The static page pre-renders
        every combination of their grids, at most ``MAX_FRAMES`` (150) frames (e.g. 7 x 7, or
        5 x 5 x 5 for three sliders, 4 x 3 x 3 x 3 for four).
      ncols, nrows: the grid of panels.
      caption: one sentence shown under the figure (say what to try).
      figsize, dpi: size of the rendered figure.

    Returns:
      A :class:`SliderFigure`; make it the last expression of a cell to display it.

    Raises:
      ValueError: for zero or more than ``MAX_SLIDERS`` (4) sliders, more than ``MAX_FRAMES`` (150)
        grid combinations, duplicate names, or grid values outside the valid range of a book
        hyper-parameter.

    Example (one slider, two frames; ``fig`` displays itself as the last line of a notebook cell):

    >>> import numpy as np
    >>> def compute(eta):
    ...     return np.arange(10) * eta
    >>> def draw(ax, out, eta):          # one panel: an Axes (several: an array of them)
    ...     ax.plot(out)
    ...     ax.set_title(f"eta = {eta:g}")
    >>> fig = slider_figure(compute, draw, [Slider("eta", [0.5, 1.0])])
    >>> len(fig.frames), float(fig.compute(eta=1.0)[-1])
    (2, 9.0)
    """
    sliders = tuple(sliders)
    if not 1 <= len(sliders) <= MAX_SLIDERS:
        raise ValueError(f"slider_figure takes 1 to {MAX_SLIDERS} sliders, got {len(sliders)}")
    n_frames = int(np.prod([len(s.grid) for s in sliders]))
    if n_frames > MAX_FRAMES:
        raise ValueError(
            f"the sliders' grids make {n_frames} static frames; at most {MAX_FRAMES} are allowed "
            "(use fewer grid values)"
        )
    names = [s.name for s in sliders]
    if len(set(names)) != len(names):
        raise ValueError(f"slider names must be distinct, got {names}")
    for name, value in (("ncols", ncols), ("nrows", nrows)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return SliderFigure(compute, draw, sliders, ncols=ncols, nrows=nrows, figsize=figsize, dpi=dpi, caption=caption)


def valid_prefix(x: Any, diverged_at: Any) -> Any:
    """The part of a saved path before divergence: ``x[:diverged_at]`` (all of it if ``-1``).

    Example:

    >>> import numpy as np
    >>> valid_prefix(np.arange(5), 3).tolist(), valid_prefix(np.arange(5), -1).tolist()
    ([0, 1, 2], [0, 1, 2, 3, 4])
    """
    k = int(np.asarray(diverged_at))
    return x if k < 0 else x[:k]


def mark_divergence(ax, diverged_at: Any, what: str = "GD", *, y: float = 0.92) -> bool:
    """Write "<what> diverged at step k" on ``ax`` when ``diverged_at >= 0``; return whether it did.

    Example:

    >>> from matplotlib.figure import Figure
    >>> ax = Figure().add_subplot()
    >>> mark_divergence(ax, 12), mark_divergence(ax, -1)
    (True, False)
    """
    k = int(np.asarray(diverged_at))
    if k < 0:
        return False
    ax.text(
        0.5,
        y,
        f"{what} diverged at step {k}",
        transform=ax.transAxes,
        ha="center",
        va="top",
        color="crimson",
        fontsize=11,
        bbox=dict(facecolor="white", edgecolor="crimson", alpha=0.9),
    )
    return True


def use_book_style() -> None:
    """Draw every following matplotlib figure in the book's style (:data:`BOOK_STYLE`).

    Also asks IPython's inline backend, when there is one, for double-resolution PNGs, so that
    static figures stay sharp on high-density screens. Slider figures keep their own size and
    resolution. Call it once, in a chapter's first cell.

    Example:

    >>> import matplotlib as mpl
    >>> with mpl.rc_context():            # (restores the settings afterwards)
    ...     use_book_style()
    ...     mpl.rcParams["axes.prop_cycle"].by_key()["color"][:2] == [PALETTE["black"], PALETTE["blue"]]
    True
    """
    import matplotlib as mpl

    mpl.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # pragma: no cover - no IPython: plain matplotlib
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")
