"""The model registry: one small function per architecture, looked up by `train.model`.

The tutorial models keep the exact layer shapes users know them by, so their parameter
counts match what the tutorials print. Every model takes float32 (N, 28, 28, 1) in [0, 1]
and ends in a softmax over 10 classes.
"""

from __future__ import annotations

from collections.abc import Callable

from digitrec.backend import keras
from digitrec.catalog import IMAGE_SHAPE, NUM_CLASSES
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


def _conv_bn(filters: int, size: int, *, strides: int = 1, padding: str = "valid",
             pool: bool = False) -> list[keras.layers.Layer]:
    """Convolution, [max-pooling,] batch normalisation, ReLU.

    The convolution has no bias (the normalisation's shift replaces it), and normalising
    after the pooling does it on a quarter of the pixels: on a CPU that is what makes
    batch normalisation cheap enough to pay for itself in faster training. The statistics
    used for inference follow the batches with momentum 0.9 (PyTorch's default; Keras'
    0.99 would still be mostly the initial guess after a short run of a few dozen steps).
    """
    layers = keras.layers
    block = [layers.Conv2D(filters, size, strides=strides, padding=padding, use_bias=False)]
    if pool:
        block.append(layers.MaxPooling2D(2))
    return [*block, layers.BatchNormalization(momentum=0.9), layers.ReLU()]


def _digitnet(name: str, widths: tuple[int, int, int, int]) -> keras.Model:
    """Our design for 28x28 digits: a strided 5x5 convolution, then three 3x3 ones that widen
    as the image shrinks (12, 5, then 3 pixels a side), batch-normalised, then dropout.

    The first convolution has 2-pixel steps: at full resolution it was 40% of a step's
    time for one input channel, and a digit's strokes are 2-3 pixels wide, so halving the
    resolution there costs no accuracy on digits (it does on clothes: see fashionnet).
    """
    first, second, third, fourth = widths
    return _sequential(
        name,
        *_conv_bn(first, 5, strides=2),
        *_conv_bn(second, 3, pool=True),
        *_conv_bn(third, 3, padding="same"),
        *_conv_bn(fourth, 3),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
    )


@register
def digitnet() -> keras.Model:
    """The default: Conv 16 5x5 stride 2, Conv 32 3x3, MaxPool, Conv 64 3x3 same, Conv 64
    3x3, each batch-normalised, Flatten, Dropout 0.3 (66,778 parameters).

    Half a tutorial CNN's cost per image and quick to converge, so that with augmentation,
    a one-cycle schedule and label smoothing it trains 7 epochs in less than the tutorial's
    5, and reads better.
    """
    return _digitnet("digitnet", (16, 32, 64, 64))


@register
def digitnet_wide() -> keras.Model:
    """digitnet wider, with 32-64-64-128 channels (142,506 parameters): the `accurate`
    setting, trained for 20 epochs."""
    return _digitnet("digitnet_wide", (32, 64, 64, 128))


@register
def fashionnet() -> keras.Model:
    """For pictures with texture (Fashion-MNIST): the first convolution at full resolution,
    then two poolings and 64-128-128 channels, batch-normalised (262,314 parameters).

    A strided first convolution, which costs digits nothing, loses a point of accuracy on
    clothes, whose seams and patterns are a pixel wide.
    """
    return _sequential(
        "fashionnet",
        *_conv_bn(32, 5, pool=True),
        *_conv_bn(64, 3, padding="same", pool=True),
        *_conv_bn(128, 3, padding="same"),
        *_conv_bn(128, 3),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
    )
