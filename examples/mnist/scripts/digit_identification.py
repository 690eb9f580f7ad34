"""Entry script of the MNIST tutorial: identify the digit in each image.

``init()`` loads the registered TensorFlow model once per worker process;
``run(mini_batch)`` gets a list of image paths and returns one
``"<file name>: <digit>"`` line per image.
"""

import os

# a quiet TensorFlow import (oneDNN's notice ignores TF_CPP_MIN_LOG_LEVEL; its
# kernels gain nothing on a network this small)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import daskscore as ds  # noqa: E402

g_model = None


def init():
    global g_model
    # workers share the machine's cores: one thread per TensorFlow call each
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    # Pull the model from the workspace (a local path on this worker)
    model_path = ds.Model.get_model_path("mnist")
    g_model = tf.saved_model.load(model_path)
    ds.EntryScript().logger.info("loaded model from %s", model_path)


def run(mini_batch):
    # Prepare each image: 28x28 grayscale -> 784 pixel values
    images = np.stack([np.array(Image.open(path)).reshape(784) for path in mini_batch])
    # Perform inference on the whole mini-batch at once
    logits = g_model.serve(tf.constant(images.astype("float32"))).numpy()
    # Find the best probability, and add it to the result list
    return [f"{os.path.basename(path)}: {int(np.argmax(row))}"
            for path, row in zip(mini_batch, logits)]
