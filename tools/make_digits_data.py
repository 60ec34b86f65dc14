"""Regenerate ``src/dyncore/data/digits.npz``, the handwritten digits shipped with dyncore.

    python tools/make_digits_data.py            # writes src/dyncore/data/digits.npz
    python tools/make_digits_data.py --check    # only compares the shipped file with scikit-learn

The data are scikit-learn's copy of the test set of the UCI "Optical Recognition of Handwritten
Digits" data set (``sklearn.datasets.load_digits``: 1,797 images of 8x8 pixels, values 0..16,
10 classes), licensed CC BY 4.0; see ``src/dyncore/data/README.md``. scikit-learn is needed only
here, never by dyncore at run time. The file holds ``X`` (uint8, ``(1797, 64)``, row-major 8x8
images) and ``y`` (uint8, ``(1797,)``), in scikit-learn's order, written with
``np.savez_compressed``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "src" / "dyncore" / "data" / "digits.npz"


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(X, y)``: uint8 arrays of shapes ``(1797, 64)`` and ``(1797,)``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = np.asarray(digits.data), np.asarray(digits.target)
    if X.shape != (1797, 64) or y.shape != (1797,):
        raise RuntimeError(f"unexpected shapes from load_digits: {X.shape}, {y.shape}")
    if not (np.all(X == np.round(X)) and X.min() >= 0 and X.max() <= 16 and y.min() >= 0 and y.max() <= 9):
        raise RuntimeError("load_digits returned values outside 0..16 (pixels) or 0..9 (labels)")
    return X.astype(np.uint8), y.astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help=f"output file (default: {OUT})")
    parser.add_argument("--check", action="store_true", help="compare the existing file instead of writing")
    args = parser.parse_args(argv)
    X, y = load_sklearn_digits()
    if args.check:
        with np.load(args.out) as f:
            same = f["X"].dtype == X.dtype and f["y"].dtype == y.dtype
            same = same and np.array_equal(f["X"], X) and np.array_equal(f["y"], y)
        print(f"{args.out}: {'identical to' if same else 'DIFFERS from'} scikit-learn's load_digits()")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, X=X, y=y)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): X {X.shape} {X.dtype}, y {y.shape} {y.dtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
