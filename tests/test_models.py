import numpy as np
import pytest

from digitrec.backend import keras
from digitrec.errors import DigitrecError
from digitrec.params import TrainParams
from digitrec.training import models

EXPECTED_PARAMETERS = {
    "mlp": 101_770,
    "cnn3": 93_322,
    "cnn2_dense800": 658_378,
    "lenet5": 61_706,
    "cnn5x5_dropout": 3_274_634,
    "digitnet": 66_778,
    "digitnet_wide": 142_506,
    "fashionnet": 262_314,
}


def test_registry_has_the_documented_models():
    assert set(models.REGISTRY) == set(EXPECTED_PARAMETERS)
    assert TrainParams().model == "digitnet"


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_model_builds_with_its_parameter_count(name):
    assert models.build_model(name).count_params() == EXPECTED_PARAMETERS[name]


@pytest.mark.slow  # trains (a step)
@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMETERS))
def test_model_trains_a_step_and_answers_probabilities(name):
    keras.utils.set_random_seed(0)
    model = models.build_model(name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    labels = np.arange(8) % 10
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(images, labels)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (8, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_model_names_the_choices():
    with pytest.raises(DigitrecError, match="train.model .resnet. is not one of .*digitnet"):
        models.build_model("resnet")
