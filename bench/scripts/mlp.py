"""The benchmark's model: a small numpy MLP (64 -> 128 -> 32 -> 1, ReLU, sigmoid).

Shared by the entry scripts and the baselines so every variant does the same work.
"""

from __future__ import annotations

import numpy as np


class MLP:
    def __init__(self, path: str) -> None:
        with np.load(path) as weights:
            self.layers = [(weights[f"w{i}"], weights[f"b{i}"]) for i in (1, 2, 3)]
        self.n_features = self.layers[0][0].shape[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Scores in (0, 1), one per row of ``x`` (float32, shape (n, 64))."""
        h = x
        for i, (w, b) in enumerate(self.layers):
            h = h @ w
            h += b
            if i < len(self.layers) - 1:
                np.maximum(h, 0, out=h)
        return 1.0 / (1.0 + np.exp(-h[:, 0]))
