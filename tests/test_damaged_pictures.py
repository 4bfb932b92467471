"""One damaged picture never stops a batch (issue 24, item 4): whatever Pillow raises on a
file's content is that file's `ImageProblem`, its error row in a batch, a 422 in the API.

A bounded fuzz: every format Pillow writes here, saved from a small digit, then mutated the
ways a damaged file is (bytes changed, cut short, bytes inserted, header fields set to
extremes), deterministically; about two thousand files in a few seconds.
"""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest
from PIL import Image

from digitrec import cli
from digitrec.examples import draw_digit
from digitrec.reading.decode import ImageProblem
from digitrec.reading.images import clean_file

MUTANTS_PER_FORMAT = 80
EXTREMES = (b"\xff\xff\xff\xff", b"\0\0\0\0", b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00",
            b"\x80\x00\x00\x00")


def seed_files() -> dict[str, bytes]:
    """Each format Pillow can write (and open back), from a small drawn digit."""
    Image.init()
    digit = draw_digit(4, 40, pen=0.08, ink=20, paper=235, seed=1)
    found = {}
    for name in sorted(set(Image.SAVE) & set(Image.OPEN)):
        for mode in ("L", "RGB", "P", "1"):
            buffer = io.BytesIO()
            try:
                digit.convert(mode).save(buffer, format=name)
                Image.open(io.BytesIO(buffer.getvalue())).load()
            except Exception:  # noqa: BLE001 (this mode or format cannot be written here)
                continue
            found[name] = buffer.getvalue()
            break
    return found


def mutant(data: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    head = min(len(damaged), 160)  # most decoders trust their header: damage it most
    how = rng.randrange(5)
    if how == 0:
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    elif how == 1:
        del damaged[rng.randrange(1, len(damaged)):]
    elif how == 2:
        at = rng.randrange(head)
        damaged[at:at + 4] = rng.choice(EXTREMES)
    elif how == 3:
        at = rng.randrange(len(damaged))
        damaged[at:at] = rng.randbytes(rng.randint(1, 16))
    else:
        damaged[rng.randrange(head)] ^= 1 << rng.randrange(8)
    return bytes(damaged)


def outcome(data: bytes) -> str:
    """"read", or the problem's message; anything else raised fails the test."""
    try:
        clean_file(io.BytesIO(data))
    except ImageProblem as exc:
        assert "\n" not in str(exc)
        return str(exc)
    return "read"


@pytest.fixture(scope="module")
def seeds():
    return seed_files()


@pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning")
def test_every_mutated_file_is_read_or_is_its_own_problem(seeds, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4_000_000)  # a header lying about size
    assert {"PNG", "JPEG", "GIF", "BMP", "TIFF", "DDS", "BLP", "SPIDER"} <= set(seeds)
    rng = random.Random(24)
    results = {"read": 0, "problem": 0}
    for name, data in seeds.items():
        assert outcome(data) == "read", name  # undamaged, each format reads
        for _ in range(MUTANTS_PER_FORMAT):
            results["read" if outcome(mutant(data, rng)) == "read" else "problem"] += 1
    assert results["problem"] > len(seeds) * MUTANTS_PER_FORMAT // 4  # the damage was real


def dds_of_unknown_pixel_format(seeds) -> bytes:
    data = bytearray(seeds["DDS"])
    data[80:84] = b"\0\0\0\0"  # DDS_PIXELFORMAT.dwFlags: Pillow raised NotImplementedError
    return bytes(data)


def blp_of_unknown_compression(seeds) -> bytes:
    data = bytearray(seeds["BLP"])
    data[4:8] = struct.pack("<i", -1)  # Pillow raised BLPFormatError
    return bytes(data)


@pytest.mark.parametrize("damage", [dds_of_unknown_pixel_format, blp_of_unknown_compression])
def test_what_fuzzing_found_is_an_error_row(seeds, damage):
    assert outcome(damage(seeds)).startswith("corrupt or")


def test_damaged_files_are_rows_and_the_batch_goes_on(tmp_path, seeds, capsys):
    from digitrec.backend import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "model.keras")
    draw_digit(4, 120, pen=0.06, ink=20, paper=235, seed=2).save(tmp_path / "good.png")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "unknown.dds").write_bytes(dds_of_unknown_pixel_format(seeds))
    (bad / "unknown.blp").write_bytes(blp_of_unknown_compression(seeds))
    rng = random.Random(5)
    for name in ("SPIDER", "TIFF", "GIF"):
        (bad / f"cut.{name.lower()}").write_bytes(seeds[name][:len(seeds[name]) // 3])
        (bad / f"mutant.{name.lower()}").write_bytes(mutant(seeds[name], rng))
    with pytest.raises(SystemExit) as stopped:
        cli.main(["predict", str(tmp_path / "good.png"), str(bad), "--model",
                  str(tmp_path / "model.keras"), "--csv", str(tmp_path / "out.csv")])
    out, err = capsys.readouterr()
    assert stopped.value.code == 0, err
    assert "Traceback" not in err
    assert "bad/unknown.dds: error: corrupt or unsupported image (NotImplementedError" in out
    assert "bad/unknown.blp: error: corrupt or unsupported image (BLPFormatError" in out
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert len(rows) == 1 + 1 + 8
    assert np.sum([row.startswith(str(tmp_path / "good.png")) for row in rows]) == 1
