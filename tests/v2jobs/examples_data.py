"""Copies of the example v2 job folders with their data (tests of daskscore.v2jobs).

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

EXAMPLES = Path(__file__).parent / "examples"


def iris(dest: Path) -> Path:
    """examples/iris with a 1500-row iris table and a pickled scikit-learn model."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder = dest / "iris"
    shutil.copytree(EXAMPLES / "iris", folder)
    data = load_iris(as_frame=True)
    frame = data.frame.rename(columns={
        "sepal length (cm)": "sepal_length", "sepal width (cm)": "sepal_width",
        "petal length (cm)": "petal_length", "petal width (cm)": "petal_width"})
    frame = pd.concat([frame] * 10, ignore_index=True)
    frame.insert(0, "id", range(len(frame)))
    frame.to_csv(folder / "data" / "iris.csv", index=False)
    features = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = LogisticRegression(max_iter=500).fit(frame[features], frame["target"])
    (folder / "model").mkdir()
    with open(folder / "model" / "iris.pkl", "wb") as f:
        pickle.dump(model, f)
    return folder


def mnist(dest: Path, count: int = 23, corrupt: int = 1) -> Path:
    """examples/mnist with ``count`` 8x8 digit PNGs (the last ``corrupt`` broken)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = dest / "mnist"
    shutil.copytree(EXAMPLES / "mnist", folder)
    digits = load_digits()
    images = (digits.images * 16).clip(0, 255).astype("uint8")
    means = np.stack([images[digits.target == d].reshape(-1, 64).mean(axis=0)
                      for d in range(10)])
    np.save(folder / "src" / "means.npy", means)
    out = folder / "data" / "digits"
    out.mkdir(parents=True)
    for i in range(count):
        path = out / f"digit_{i:03d}.png"
        if i >= count - corrupt:
            path.write_bytes(b"not a png")
        else:
            Image.fromarray(images[i]).save(path)
    return folder


def many_models(dest: Path, stores: int = 3, weeks: int = 20) -> Path:
    """examples/many_models with a sales table of ``stores`` stores."""
    folder = dest / "many_models"
    shutil.copytree(EXAMPLES / "many_models", folder)
    rows = [{"Store": s, "Week": w, "Sales": 100 * s + (s + 1) * w}
            for s in range(1, stores + 1) for w in range(weeks)]
    (folder / "data").mkdir()
    pd.DataFrame(rows).to_csv(folder / "data" / "sales.csv", index=False)
    return folder
