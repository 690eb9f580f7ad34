"""Local data for the notebook flows: what the v1 samples download, made here.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd


def azure_config(folder: Path) -> Path:
    """An Azure ML config.json, as the portal gives it (no daskscore key)."""
    path = folder / "config.json"
    path.write_text(
        json.dumps(
            {
                "subscription_id": "00000000-0000-0000-0000-000000000000",
                "resource_group": "rg-batch",
                "workspace_name": "ws-batch",
                "location": "westeurope",
            }
        )
    )
    return path


def digits(data: Path, n: int = 30) -> dict[str, int]:
    """``mnist/<i>.png`` digits (sklearn's 8x8 ones) and a pickled classifier;
    the true label of each file."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    bunch = load_digits()
    model = LogisticRegression(max_iter=2000).fit(bunch.data, bunch.target)
    (data / "digits.pkl").write_bytes(pickle.dumps(model))
    # the same classifier's weights, for a TF1-style graph (tf.compat.v1)
    (data / "mnist-model").mkdir(parents=True, exist_ok=True)
    np.savez(
        data / "mnist-model" / "weights.npz",
        W=model.coef_.T.astype(np.float32),
        b=model.intercept_.astype(np.float32),
    )
    folder = data / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(n):
        pixels = (bunch.images[i] / 16.0 * 255).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:03d}.png")
        labels[f"{i:03d}.png"] = int(bunch.target[i])
    return labels


def iris(data: Path) -> pd.DataFrame:
    """``iris/iris_<k>.csv`` (two files) and a pickled classifier; the rows."""
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    bunch = load_iris(as_frame=True)
    frame = bunch.frame.rename(
        columns={
            "sepal length (cm)": "sepal.length",
            "sepal width (cm)": "sepal.width",
            "petal length (cm)": "petal.length",
            "petal width (cm)": "petal.width",
        }
    )
    frame["variety"] = [bunch.target_names[t] for t in frame.pop("target")]
    model = DecisionTreeClassifier(random_state=0).fit(
        frame.iloc[:, :4].values, frame["variety"]
    )
    (data / "iris.pkl").write_bytes(pickle.dumps(model))
    (data / "iris").mkdir(parents=True, exist_ok=True)
    frame.iloc[:75].to_csv(data / "iris" / "iris_1.csv", index=False)
    frame.iloc[75:].to_csv(data / "iris" / "iris_2.csv", index=False)
    return frame


def audio(data: Path) -> dict[tuple[str, str], int]:
    """``audio/<user>/<season>/<genres>.wav`` files of random bytes; how many
    files each (user, genres) has."""
    rng = np.random.default_rng(0)
    counts: dict[tuple[str, str], int] = {}
    for user in ("alice", "bob", "carol"):
        for season in ("spring", "summer", "winter"):
            for genres in ("jazz", "pop"):
                if user == "carol" and genres == "jazz" and season != "spring":
                    continue
                path = data / "audio" / user / season / f"{genres}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"RIFF" + rng.bytes(64))
                counts[(user, genres)] = counts.get((user, genres), 0) + 1
    return counts


def sales(data: Path) -> pd.DataFrame:
    """``sales/sales.csv``: weekly quantities of 3 stores x 2 brands."""
    rng = np.random.default_rng(1)
    rows = [
        {
            "store": store,
            "brand": brand,
            "week": week,
            "quantity": int(rng.integers(1, 100)),
        }
        for week in range(1, 9)
        for store in (1001, 1002, 1003)
        for brand in ("dominicks", "tropicana")
    ]
    frame = pd.DataFrame(rows)
    (data / "sales").mkdir(parents=True, exist_ok=True)
    frame.to_csv(data / "sales" / "sales.csv", index=False)
    return frame


def many_models(data: Path) -> dict[str, pd.DataFrame]:
    """``oj_sales/Store<s>_<brand>.csv``: one file per model, as the many-models
    accelerator splits its data; each a linear trend plus noise."""
    rng = np.random.default_rng(2)
    folder = data / "oj_sales"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for store in (1001, 1002, 1003):
        for brand in ("dominicks", "minute.maid"):
            weeks = np.arange(1, 21)
            slope = (store - 1000) * (2 if brand == "dominicks" else 3)
            quantity = 100 + slope * weeks + rng.normal(0, 0.5, len(weeks))
            frame = pd.DataFrame({"week": weeks, "quantity": quantity.round(3)})
            name = f"Store{store}_{brand}"
            frame.to_csv(folder / f"{name}.csv", index=False)
            out[name] = frame
    return out


def scoring_table(data: Path) -> pd.DataFrame:
    """``score/part_<k>.csv`` with id, features f0..f3, and a pickled model."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    features = rng.normal(size=(60, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(features, labels)
    (data / "scorer.pkl").write_bytes(pickle.dumps(model))
    frame = pd.DataFrame(features, columns=["f0", "f1", "f2", "f3"])
    frame.insert(0, "id", [f"row-{i:03d}" for i in range(60)])
    (data / "score").mkdir(parents=True, exist_ok=True)
    frame.iloc[:30].to_csv(data / "score" / "part_1.csv", index=False)
    frame.iloc[30:].to_csv(data / "score" / "part_2.csv", index=False)
    frame["expected"] = model.predict(features)
    return frame
