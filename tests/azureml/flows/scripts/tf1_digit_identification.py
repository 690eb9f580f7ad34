# An entry script in the style of the v1 MNIST sample with its TensorFlow 1 graph:
# init() finds the registered model with Model.get_model_path and builds a
# tf.compat.v1 graph and session; run() scores a list of image paths.
import os

import numpy as np
import tensorflow as tf
from azureml.core import Model
from PIL import Image


def init():
    global g_tf_sess, X, output
    tf.compat.v1.disable_eager_execution()
    model_root = Model.get_model_path("mnist-tf1")
    params = np.load(os.path.join(model_root, "weights.npz"))
    X = tf.compat.v1.placeholder(tf.float32, [None, 64], name="X")
    W = tf.compat.v1.constant(params["W"], dtype=tf.float32)
    b = tf.compat.v1.constant(params["b"], dtype=tf.float32)
    output = tf.compat.v1.argmax(tf.compat.v1.matmul(X, W) + b, 1)
    g_tf_sess = tf.compat.v1.Session(
        config=tf.compat.v1.ConfigProto(device_count={"GPU": 0})
    )


def run(mini_batch):
    print(f"run method start: {__file__}, run({mini_batch})")
    resultList = []
    for image in mini_batch:
        data = Image.open(image)
        np_im = np.array(data, dtype=np.float32).reshape((1, 64)) / 255.0 * 16
        pred = g_tf_sess.run(output, feed_dict={X: np_im})
        resultList.append(f"{os.path.basename(image)}: {pred[0]}")
    return resultList
