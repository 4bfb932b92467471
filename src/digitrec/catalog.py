"""What the pipeline knows, said once: the datasets (their four IDX files, official mirrors,
checksums, class names and how each is best trained) and each registry model's own recipe,
and how `auto` in params.yaml resolves from them. No TensorFlow here: every stage reads it.

Sizes and SHA-256 digests are of the *decompressed* files of the official releases, so a
copy that was re-compressed differently (another mirror, another gzip level) still verifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from digitrec.errors import DigitrecError

IMAGE_SIDE = 28                          # every image is IMAGE_SIDE x IMAGE_SIDE pixels
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, 1)  # as a model takes it: height, width, channel
NUM_CLASSES = 10

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


@dataclass(frozen=True)
class FileSpec:
    """One decompressed IDX file: its standard name, byte size, SHA-256 and number of dimensions.

    `ndim` lets a download refuse a file of the wrong kind (labels where images belong) as
    soon as its header arrives, even when checksums are not verified.
    """

    name: str
    size: int
    sha256: str
    ndim: int

    @property
    def archive_name(self) -> str:
        return f"{self.name}.gz"


@dataclass(frozen=True)
class Dataset:
    """A dataset in the MNIST layout: four IDX files and where to fetch them, and how it is
    best trained, so that `dataset: NAME` alone trains well: `model` is the registry model
    `train.model: auto` stands for, and `augment` holds what differs from the defaults of
    `train.augment` (drawn for handwriting). `negatives` says whether prepare draws
    pictures of none of its classes for the model to learn to refuse (`prepare.negatives`):
    a reader of handwriting meets letters, symbols and doodles; clothes have nothing to
    refuse."""

    name: str
    mirrors: tuple[str, ...]
    files: tuple[FileSpec, ...]
    class_names: tuple[str, ...]
    model: str = "digitnet"
    augment: Mapping[str, float | bool] = field(default_factory=dict)
    negatives: bool = True

    def negative_share(self, requested: float) -> float:
        """The share of negatives prepare draws for this dataset: `prepare.negatives`, or
        0 for a dataset with nothing to refuse."""
        return requested if self.negatives else 0.0


MNIST = Dataset(
    name="mnist",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    files=(
        FileSpec(TRAIN_IMAGES, 47_040_016,
                 "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", ndim=3),
        FileSpec(TRAIN_LABELS, 60_008,
                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", ndim=1),
        FileSpec(TEST_IMAGES, 7_840_016,
                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", ndim=3),
        FileSpec(TEST_LABELS, 10_008,
                 "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", ndim=1),
    ),
    class_names=tuple(str(d) for d in range(10)),
)

FASHION_MNIST = Dataset(
    name="fashion_mnist",
    mirrors=(
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    files=(
        FileSpec(TRAIN_IMAGES, 47_040_016,
                 "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", ndim=3),
        FileSpec(TRAIN_LABELS, 60_008,
                 "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", ndim=1),
        FileSpec(TEST_IMAGES, 7_840_016,
                 "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", ndim=3),
        FileSpec(TEST_LABELS, 10_008,
                 "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", ndim=1),
    ),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    # Seams and patterns a pixel wide: a model whose first convolution sees every pixel.
    model="fashionnet",
    # Photos of clothes, centred, upright and of one size: only mirror them. Drawing them as
    # pen strokes erases their texture, and each of the handwriting distortions cost test
    # accuracy (see docs/benchmarks.md).
    augment={"redrawn": 0.0, "flip": True, "rotation": 0.0, "shift": 0.0, "zoom": 0.0},
    # Every picture is one of the ten; the negatives are drawn as handwriting is.
    negatives=False,
)

DATASETS = {d.name: d for d in (MNIST, FASHION_MNIST)}


def get_dataset(name: str) -> Dataset:
    """Look a dataset up by its `params.yaml` name."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DigitrecError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        ) from None


@dataclass(frozen=True)
class Recipe:
    """What `train.epochs: auto` and `train.learning_rate: auto` stand for with one model."""

    epochs: int
    learning_rate: float


# By registry model (training/models.py; a test checks both list the same models): ours as
# measured in the benchmarks, the tutorial models at their tutorials' epochs and rate (the
# rest of the recipe, params.yaml's train section, is the same for every model).
MODEL_RECIPES: dict[str, Recipe] = {
    "digitnet": Recipe(epochs=7, learning_rate=0.03),
    "digitnet_wide": Recipe(epochs=20, learning_rate=0.03),
    "fashionnet": Recipe(epochs=12, learning_rate=0.01),
    "mlp": Recipe(epochs=10, learning_rate=1e-3),
    "cnn3": Recipe(epochs=5, learning_rate=1e-3),
    "cnn2_dense800": Recipe(epochs=10, learning_rate=1e-3),
    "lenet5": Recipe(epochs=10, learning_rate=1e-3),
    "cnn5x5_dropout": Recipe(epochs=10, learning_rate=1e-4),
}
AUTO = "auto"


def resolve_auto(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params file with each `auto` as the dataset it names stands for it, so that
    `dataset: NAME` alone trains well: `train.model: auto` is the dataset's own model,
    `train.epochs: auto` and `train.learning_rate: auto` that model's own (`MODEL_RECIPES`),
    and `train.augment: true` (and what an augment mapping leaves out) the dataset's own
    style of distortion.

    Nothing is refused here: what cannot be resolved (an unknown dataset or model) is left
    as it is, for the params check to name.
    """
    params = dict(params)
    dataset = DATASETS.get(params.get("dataset")) if isinstance(params.get("dataset"), str) \
        else None
    train = params.get("train")
    if dataset is None or not isinstance(train, dict):
        return params
    train = dict(train)
    if train.get("model") == AUTO:
        train["model"] = dataset.model
    recipe = MODEL_RECIPES.get(train.get("model")) if isinstance(train.get("model"), str) \
        else None
    for key in ("epochs", "learning_rate"):
        if train.get(key) == AUTO and recipe is not None:
            train[key] = getattr(recipe, key)
    augment = train.get("augment")
    if augment is True:
        train["augment"] = dict(dataset.augment)
    elif isinstance(augment, dict):
        train["augment"] = {**dataset.augment, **augment}
    params["train"] = train
    return params
