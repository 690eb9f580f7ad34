"""Stand-ins for the tutorial's downloads: MNIST-style images and a trained model.

No network: the images are the handwritten digits that scikit-learn ships
(``sklearn.datasets.load_digits``, 1,797 8x8 images), upsampled to 28x28 grayscale
PNGs like MNIST's, with a few shifted copies of each so the set has a few thousand
files. The digits are split in two first: the model is trained on one half and
only the other half is written as images, so scoring them measures accuracy on
held-out data. Labels are kept apart from the images, in ``labels/labels.csv``.

``python examples/mnist/build_data.py [FOLDER]`` builds everything into FOLDER
(default ``demo-output/mnist``)::

    FOLDER/mnist/digit_00000.png ...   the images to score (28x28, uint8)
    FOLDER/labels/labels.csv           file,label for every image
    FOLDER/models/                     a TensorFlow SavedModel (784 floats -> 10 logits)
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FOLDER = os.path.join(os.path.dirname(os.path.dirname(HERE)), "demo-output",
                              "mnist")
# (dx, dy) pixel shifts of the 28x28 image: each held-out digit is written once
# per shift, the training digits are augmented with all of them
SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1))


def _digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """28x28 uint8 digits and labels, split in half (train, held out)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack([
        np.asarray(Image.fromarray((im * 255 / 16).astype("uint8")).resize(
            (20, 20), Image.BILINEAR))
        for im in digits.images
    ])
    # MNIST style: a 20x20 digit centred in a 28x28 frame
    framed = np.zeros((len(images), 28, 28), dtype="uint8")
    framed[:, 4:24, 4:24] = images
    order = np.random.default_rng(seed).permutation(len(framed))
    half = len(order) // 2
    train, test = order[:half], order[half:]
    return framed[train], digits.target[train], framed[test], digits.target[test]


def _shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(np.roll(image, dy, axis=0), dx, axis=1)


def build_images(folder: str = DEFAULT_FOLDER, limit: int | None = None,
                 shifts: int = 3) -> tuple[str, str]:
    """Write the held-out digits as PNGs and their labels; returns both paths.

    Parameters
    ----------
    folder
        Where to write ``mnist/`` and ``labels/labels.csv``.
    limit
        Write at most this many images (the test suite uses a few hundred).
    shifts
        Copies per digit (1-7): the digit itself, then shifted ones.
    """
    from PIL import Image

    _, _, test_x, test_y = _digits()
    image_dir = os.path.join(folder, "mnist")
    label_file = os.path.join(folder, "labels", "labels.csv")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.dirname(label_file), exist_ok=True)
    rows = []
    for s, (dx, dy) in enumerate(SHIFTS[:shifts]):
        for i, (image, label) in enumerate(zip(test_x, test_y)):
            name = f"digit_{s * len(test_x) + i:05d}.png"
            path = os.path.join(image_dir, name)
            if not os.path.exists(path):
                Image.fromarray(_shift(image, dx, dy)).save(path)
            rows.append((name, int(label)))
            if limit is not None and len(rows) >= limit:
                break
        if limit is not None and len(rows) >= limit:
            break
    wanted = {name for name, _ in rows}
    for name in os.listdir(image_dir):  # left from a bigger set built here before
        if name.endswith(".png") and name not in wanted:
            os.remove(os.path.join(image_dir, name))
    with open(label_file, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "label"])
        writer.writerows(rows)
    return image_dir, label_file


def train_model(folder: str = DEFAULT_FOLDER, epochs: int = 8) -> str:
    """Train a small Keras network on the training half; save it as a SavedModel.

    Returns the model folder (``FOLDER/models``). An existing model is kept.
    The network takes 784 pixel values (0-255, float32) and returns 10 logits,
    like the tutorial's pre-trained MNIST model.
    """
    model_dir = os.path.join(folder, "models")
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    # a quiet import: see scripts/digit_identification.py
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    keras.utils.set_random_seed(0)
    train_x, train_y, _, _ = _digits()
    x = np.concatenate([np.stack([_shift(im, dx, dy) for im in train_x])
                        for dx, dy in SHIFTS]).reshape(-1, 784).astype("float32")
    y = np.concatenate([train_y] * len(SHIFTS))
    model = keras.Sequential([
        keras.Input((784,)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    os.makedirs(folder, exist_ok=True)
    model.export(model_dir, verbose=False)  # a TensorFlow SavedModel
    return model_dir


def accuracy(output_file: str, label_file: str) -> tuple[float, int]:
    """Accuracy of ``"<file>: <digit>"`` lines against ``labels.csv``; and the count."""
    with open(label_file, newline="") as f:
        labels = {row["file"]: int(row["label"]) for row in csv.DictReader(f)}
    right = total = 0
    with open(output_file) as f:
        for line in f:
            name, _, digit = line.strip().rpartition(": ")
            if name in labels:
                total += 1
                right += int(digit) == labels[name]
    return (right / total if total else 0.0), total


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_FOLDER
    images, labels = build_images(target)
    print(f"images: {images} ({len(os.listdir(images))} files), labels: {labels}")
    print(f"model: {train_model(target)}")
