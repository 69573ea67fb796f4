"""A digit model trained the way Keras's "Simple MNIST convnet" tutorial trains it, outside
edgecnn: pixels divided by 255 *outside* the model, one-hot labels, ``model.save(...)``.

    python examples/tutorial_mnist.py --data mnist.npz --out tutorial.keras

``--data`` is a file in the layout of Keras's ``mnist.npz`` (x_train, y_train, x_test,
y_test), such as ``~/.keras/datasets/mnist.npz`` after ``keras.datasets.mnist.load_data()``,
or the offline stand-in ``python examples/mnist5k_npz.py mnist.npz`` writes. Nothing here
imports edgecnn: it stands for a model someone brings.
"""

from __future__ import annotations

import argparse

import keras
import numpy as np
from keras import layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="mnist.npz in Keras's layout")
    parser.add_argument("--out", default="tutorial.keras", help=".keras (or legacy .h5) file")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    with np.load(args.data) as f:  # what keras.datasets.mnist.load_data() does
        (x_train, y_train), (x_test, y_test) = (f["x_train"], f["y_train"]), (f["x_test"],
                                                                               f["y_test"])
    # The tutorial's preprocessing: scale to [0, 1] and add a channel axis, outside the model.
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
    y_train, y_test = keras.utils.to_categorical(y_train, 10), keras.utils.to_categorical(y_test,
                                                                                          10)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1,
              verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy {accuracy * 100:.2f} % on {len(x_test)} images")
    model.save(args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
