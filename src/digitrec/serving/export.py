"""`digitrec export`: the trained model for TensorFlow Serving, ONNX Runtime and LiteRT.

Keras 3's `model.export` writes all three (`tf_saved_model`, `onnx` through tf2onnx, and
`litert` through TensorFlow's converter). ONNX needs the converter and the runtime that
checks it: `pip install "digitrec[export]"`.

An export is only kept when the exported model, run by its own runtime, answers like the
Keras model on a batch of real-looking digits (drawn pictures through our preprocessing):
every probability within `TOLERANCE` and the same digit for each. It is written beside
its final place and renamed there only then, so a failed export never replaces a good one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from digitrec import scoring
from digitrec.errors import DigitrecError
from digitrec.files import disk_errors, make_shareable, put_file, replace_dir, staging_dir
from digitrec.outputs import Kind, check_output, holds_only, starts_with
from digitrec.paths import MODEL

TOLERANCE = 1e-4
EXTRA = 'pip install "digitrec[export]"'


@dataclass
class Check:
    """How an export compared with the Keras model on the check digits."""

    count: int
    max_difference: float


def check_digits() -> np.ndarray:
    """(N, 28, 28, 1) float32 digits as users' pictures reach the model.

    Every digit drawn as pen on paper, as a photo of paper, and as chalk on a board, then
    through `reading.images.clean_image`, so the check covers inputs like the real ones.
    """
    from digitrec.examples import draw_digit, photo_of_paper
    from digitrec.reading.images import clean_image

    pictures = []
    for digit in range(10):
        pictures.append(draw_digit(digit, 160, pen=0.05, ink=30, paper=230, seed=digit))
        page = draw_digit(digit, 240, pen=0.03, ink=40, paper=225, seed=50 + digit)
        pictures.append(photo_of_paper(page, seed=digit))
        pictures.append(draw_digit(digit, 120, pen=0.09, ink=235, paper=25, seed=90 + digit))
    return np.stack([clean_image(p).digit for p in pictures])[..., None].astype(np.float32)


def compare(expected: np.ndarray, got: np.ndarray, what: str) -> Check:
    """`Check` if `got` matches `expected`; a `DigitrecError` saying how it differs if not."""
    got = np.asarray(got, dtype=np.float64)
    if got.size != expected.size:
        raise DigitrecError(f"{what}: answers {got.shape} for the Keras model's "
                            f"{expected.shape}; not written")
    got = got.reshape(expected.shape)
    difference = float(np.max(np.abs(got - expected)))
    if not np.isfinite(difference) or difference >= TOLERANCE:
        raise DigitrecError(f"{what}: its probabilities differ from the Keras model's by up "
                            f"to {difference:.2g} (allowed: under {TOLERANCE:g}); not written")
    changed = int(np.sum(scoring.predictions(got) != scoring.predictions(expected)))
    if changed:
        raise DigitrecError(f"{what}: reads {changed} of {len(expected)} check digits "
                            f"differently from the Keras model; not written")
    return Check(len(expected), difference)


def run_savedmodel(path: Path, digits: np.ndarray) -> np.ndarray:
    """Run a SavedModel's `serve` endpoint, as TensorFlow Serving would."""
    from digitrec.backend import tf

    loaded = tf.saved_model.load(str(path))  # kept: `serve` needs its variables alive
    return loaded.serve(digits).numpy()


def run_onnx(path: Path, digits: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: digits})[0]


def run_tflite(path: Path, digits: np.ndarray) -> np.ndarray:
    """Run a .tflite file with LiteRT's interpreter (TensorFlow's own where LiteRT is absent)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from digitrec.backend import tf

        Interpreter = tf.lite.Interpreter  # noqa: N806 (a class)
    interpreter = Interpreter(model_path=str(path))
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], digits.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], digits)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@dataclass(frozen=True)
class Format:
    """One export format: what Keras calls it, the file's suffix (none: a folder), the
    runtime that checks it, the packages it needs beyond TensorFlow, for whom it is, and
    how an earlier export of it is recognised (only that is replaced without --force)."""

    keras_name: str
    suffix: str
    run: Callable[[Path, np.ndarray], np.ndarray]
    needs: tuple[str, ...]
    use: str
    kind: Kind


SAVEDMODEL_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables", "assets")

FORMATS: dict[str, Format] = {
    "savedmodel": Format("tf_saved_model", "", run_savedmodel, (), "TensorFlow Serving",
                         Kind("a SavedModel folder", holds_only(*SAVEDMODEL_ENTRIES),
                              folder=True)),
    "onnx": Format("onnx", ".onnx", run_onnx, ("tf2onnx", "onnx", "onnxruntime"),
                   "ONNX Runtime", Kind("an ONNX model", starts_with(b"\x08"))),
    "tflite": Format("litert", ".tflite", run_tflite, (), "TensorFlow Lite / LiteRT",
                     Kind("a TensorFlow Lite model", starts_with(b"TFL3", offset=4))),
}


def default_output(format: str) -> Path:
    """Where `digitrec export` writes a format when not told: beside the model, named after
    it (`models/model.onnx`), or `models/savedmodel/` (git-ignored, as they are made from a
    model DVC tracks)."""
    suffix = FORMATS[format].suffix
    return MODEL.with_suffix(suffix) if suffix else MODEL.parent / format


def require_tools(format: str) -> None:
    """A clear message, before any work, when a converter or runtime is not installed."""
    missing = [name for name in FORMATS[format].needs if not _importable(name)]
    if missing:
        raise DigitrecError(f"{format} export needs {', '.join(missing)}: {EXTRA}")


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@contextmanager
def staged_output(output: Path, format: str) -> Iterator[Path]:
    """A path in a scratch folder beside `output` to export to; put at `output` only when
    the block succeeds (a folder swapped in, a file renamed, or written into a device).
    What is at `output` is checked first (`export`: `outputs.check_output`)."""
    with staging_dir(output) as staging:
        artifact = staging / f"model{FORMATS[format].suffix}"
        yield artifact
        make_shareable(artifact, directory=artifact.is_dir())
        if artifact.is_dir():
            replace_dir(artifact, output)
        else:
            put_file(artifact, output)


def export_model(model: Any, format: str, output: Path, *, inputs: tuple[Path, ...] = (),
                 force: bool = False) -> Check:
    """Write `model` as `format` at `output`, checked against Keras before it is kept.

    `output` is checked first: never one of `inputs` (the model file), and an existing
    file or folder that is not an earlier export of `format` only with `force`.
    """
    if format not in FORMATS:
        raise DigitrecError(f"unknown export format {format!r}; choose one of "
                            f"{', '.join(FORMATS)}")
    require_tools(format)
    check_output(output, FORMATS[format].kind, inputs=inputs, force=force)
    digits = check_digits()
    expected = np.asarray(model.predict_on_batch(digits), dtype=np.float64)
    output = Path(output)
    weights = 4 * model.count_params()  # the least an export of float32 weights takes
    with disk_errors(output, weights, at_least=True), staged_output(output, format) as artifact:
        try:
            with warnings.catch_warnings():  # Keras' own patch of tf2onnx for NumPy 2 warns
                warnings.simplefilter("ignore", FutureWarning)
                model.export(str(artifact), format=FORMATS[format].keras_name, verbose=False)
        except ImportError as exc:
            raise DigitrecError(f"{format} export needs {exc.name or exc}: {EXTRA}") from None
        check = compare(expected, FORMATS[format].run(artifact, digits),
                        f"{output} ({format} export)")
    return check


def export(model_path: Path, format: str, output: Path, force: bool = False) -> Check:
    """`digitrec export`: load the Keras model file and export it."""
    from digitrec.modelfile import load_model

    if format not in FORMATS:  # before loading TensorFlow
        raise DigitrecError(f"unknown export format {format!r}; choose one of "
                            f"{', '.join(FORMATS)}")
    require_tools(format)
    check_output(output, FORMATS[format].kind, inputs=(model_path,), force=force)
    return export_model(load_model(model_path), format, Path(output),
                        inputs=(Path(model_path),), force=force)
