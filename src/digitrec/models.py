"""The model registry: one small function per architecture, looked up by `train.model`.

The tutorial models keep the exact layer shapes users know them by, so their parameter
counts match what the tutorials print. Every model takes float32 (N, 28, 28, 1) in [0, 1]
and ends in a softmax over 10 classes.
"""

from __future__ import annotations

from collections.abc import Callable

from digitrec.backend import keras
from digitrec.datasets import IMAGE_SHAPE, NUM_CLASSES
from digitrec.errors import DigitrecError

REGISTRY: dict[str, Callable[[], keras.Model]] = {}


def register(builder: Callable[[], keras.Model]) -> Callable[[], keras.Model]:
    """Add a builder to the registry under its function name."""
    REGISTRY[builder.__name__] = builder
    return builder


def check_name(name: str) -> None:
    """Refuse a model name the registry does not hold, naming the ones it does."""
    if name not in REGISTRY:
        raise DigitrecError(
            f"train.model {name!r} is not one of {', '.join(REGISTRY)}")


def build_model(name: str) -> keras.Model:
    """Build the registered model `name`, uncompiled."""
    check_name(name)
    return REGISTRY[name]()


def _sequential(name: str, *layers: keras.layers.Layer) -> keras.Model:
    return keras.Sequential(
        [keras.Input(IMAGE_SHAPE), *layers, keras.layers.Dense(NUM_CLASSES, activation="softmax")],
        name=name,
    )


@register
def mlp() -> keras.Model:
    """The Keras beginner tutorial: Flatten, Dense 128 (101,770 parameters)."""
    return _sequential("mlp", keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"))


@register
def cnn3() -> keras.Model:
    """The TensorFlow CNN tutorial: Conv 32-64-64 3x3, Dense 64 (93,322 parameters)."""
    layers = keras.layers
    return _sequential(
        "cnn3",
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
    )


@register
def cnn2_dense800() -> keras.Model:
    """Two Conv 32 3x3 blocks and a Dense 800 layer (658,378 parameters)."""
    layers = keras.layers
    return _sequential(
        "cnn2_dense800",
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(800, activation="relu"),
    )


@register
def lenet5() -> keras.Model:
    """LeNet-5 as commonly built in Keras (61,706 parameters).

    Conv 6 5x5 same, AvgPool + sigmoid, Conv 16 5x5, MaxPool, Conv 120 5x5, Dense 84
    sigmoid. The layers the description leaves without an activation use ReLU.
    """
    layers = keras.layers
    return _sequential(
        "lenet5",
        layers.Conv2D(6, 5, padding="same"),
        layers.AveragePooling2D(2),
        layers.Activation("sigmoid"),
        layers.Conv2D(16, 5, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(120, 5, activation="relu"),
        layers.Flatten(),
        layers.Dense(84, activation="sigmoid"),
    )


@register
def cnn5x5_dropout() -> keras.Model:
    """The classic TensorFlow 'Deep MNIST' model: Conv 32-64 5x5, Dense 1024, dropout
    (3,274,634 parameters)."""
    layers = keras.layers
    return _sequential(
        "cnn5x5_dropout",
        layers.Conv2D(32, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2, padding="same"),
        layers.Conv2D(64, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(2, padding="same"),
        layers.Flatten(),
        layers.Dense(1024, activation="relu"),
        layers.Dropout(0.5),
    )


def _digitnet(name: str, widths: tuple[int, int, int]) -> keras.Model:
    """Our design: three convolutions that widen as the image shrinks, then dropout."""
    layers = keras.layers
    return _sequential(
        name,
        layers.Conv2D(widths[0], 5, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(widths[1], 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(widths[2], 3, activation="relu"),
        layers.Flatten(),
        layers.Dropout(0.3),
    )


@register
def digitnet() -> keras.Model:
    """The default: Conv 16 5x5, MaxPool, Conv 32 3x3 same, MaxPool, Conv 64 3x3, Flatten,
    Dropout 0.3 (33,802 parameters).

    A third of a tutorial CNN's size and cheap per image, so that with augmentation, a
    one-cycle schedule and weight averaging it trains for more epochs in about the time
    they take, and reads better. (Batch normalisation would speed convergence, but costs
    40% more per step on a CPU.)
    """
    return _digitnet("digitnet", (16, 32, 64))


@register
def digitnet128() -> keras.Model:
    """digitnet with 128 channels in its last convolution (62,538 parameters), for the
    `accurate` setting: 1.45x the time per epoch, where doubling every width (digitnet_wide)
    costs 2.35x on a CPU, whose kernels work in blocks of 16 channels."""
    return _digitnet("digitnet128", (16, 32, 128))


@register
def digitnet_wide() -> keras.Model:
    """digitnet with twice the channels (113,674 parameters), for the `accurate` setting."""
    return _digitnet("digitnet_wide", (32, 64, 128))
