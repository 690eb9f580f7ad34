# An entry script in the style of the v1 MNIST sample
# (file-dataset-image-inference-mnist): init() loads the model once, run() gets a
# list of image paths and returns one line each.
import argparse
import os
import pickle

import numpy as np
from PIL import Image


def init():
    global g_model
    parser = argparse.ArgumentParser(description="Digit identification")
    parser.add_argument("--model", dest="model", required=True)
    args, _ = parser.parse_known_args()
    with open(args.model, "rb") as f:
        g_model = pickle.load(f)


def run(mini_batch):
    print(f"run method start: {__file__}, run({mini_batch})")
    resultList = []
    for image in mini_batch:
        data = np.array(Image.open(image), dtype=np.float64).reshape(1, -1) / 255.0 * 16
        best = int(g_model.predict(data)[0])
        resultList.append(f"{os.path.basename(image)}: {best}")
    return resultList
