import pytest

from digitrec import modelfile
from digitrec.backend import keras
from digitrec.errors import DigitrecError


def digit_model():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def test_a_saved_model_loads_back_checked(tmp_path):
    model = digit_model()
    path = tmp_path / "models" / "model.keras"
    modelfile.save_model(model, path)
    loaded = modelfile.load_model(path)
    assert loaded.input_shape == (None, 28, 28, 1)
    assert [p.name for p in path.parent.iterdir()] == ["model.keras"]  # no staging left


def test_a_failed_save_keeps_the_previous_model(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    modelfile.save_model(digit_model(), path)
    before = path.read_bytes()

    def broken_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        modelfile.save_model(digit_model(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_other_class_counts_are_checked_against_the_model(tmp_path):
    path = tmp_path / "model.keras"
    modelfile.save_model(digit_model(), path)
    with pytest.raises(DigitrecError, match=r"gives output \(None, 10\), not \(None, 5\)"):
        modelfile.load_model(path, num_classes=5)
