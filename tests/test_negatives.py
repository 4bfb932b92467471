"""The negatives generator: deterministic, MNIST-shaped, centred, varied, font-independent."""

import numpy as np
from scipy import ndimage

from digitrec.data.negatives import draw_negatives, glyphs


def test_same_seed_same_pictures_other_seed_others():
    a = draw_negatives(40, seed=3)
    assert np.array_equal(a, draw_negatives(40, seed=3))
    assert not np.array_equal(a, draw_negatives(40, seed=4))


def test_shape_range_and_centred_ink():
    pictures = draw_negatives(60, seed=0)
    assert pictures.shape == (60, 28, 28) and pictures.dtype == np.float32
    assert pictures.min() >= 0.0 and pictures.max() <= 1.0
    inked = [p for p in pictures if (p > 0.5).sum() > 20]
    assert len(inked) > 30
    for picture in inked:
        cy, cx = ndimage.center_of_mass(picture)
        assert abs(cy - 13.5) < 2.5 and abs(cx - 13.5) < 2.5


def test_pictures_vary():
    pictures = draw_negatives(50, seed=1).reshape(50, -1)
    distinct = {p.tobytes() for p in pictures}
    assert len(distinct) > 40


def test_no_digit_like_text_and_builtin_font_works(monkeypatch):
    assert not set("0123456789") & set("".join(glyphs.texts()))
    monkeypatch.setattr(glyphs, "font_paths", lambda: ())
    pictures = draw_negatives(20, seed=2)
    assert (pictures > 0.5).any(axis=(1, 2)).sum() > 10


def test_fragments_keep_little_of_a_digit_and_are_deterministic():
    from digitrec.data.negatives.fragments import MAX_SHARE, digit_fragments

    digit = np.zeros((28, 28), dtype=np.float32)
    digit[4:24, 12:16] = 1.0   # a tall "1"
    digit[4:8, 8:20] = 1.0
    digits = np.stack([digit, digit.T])
    pieces = digit_fragments(digits, 12, seed=5)
    assert np.array_equal(pieces, digit_fragments(digits, 12, seed=5))
    assert pieces.shape == (12, 28, 28) and pieces.max() <= 1.0
    assert (pieces.sum(axis=(1, 2)) > 0).all()
    assert (pieces.sum(axis=(1, 2)) <= MAX_SHARE * digit.sum() + 1e-3).all()
    assert ((pieces > 0.5).any(axis=1).sum(axis=1) < 10).all()  # never tall like the digit


def test_negatives_written_and_loaded(tmp_path):
    from digitrec.data.prepared import load_negatives, write_negatives

    assert load_negatives(tmp_path, "val").shape == (0, 28, 28, 1)
    pictures = draw_negatives(6, seed=0)
    write_negatives(tmp_path, "val", pictures)
    loaded = load_negatives(tmp_path, "val")
    assert loaded.shape == (6, 28, 28, 1) and np.array_equal(loaded[..., 0], pictures)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val_negatives.npy"]


def test_glyph_a_font_lacks_is_never_drawn():
    from PIL import ImageFont

    font = ImageFont.load_default(48)
    assert glyphs._missing(font, "\U0010fffe") and not glyphs._missing(font, "k")


def test_hand_drawn_shapes_all_draw_ink_in_the_box_and_vary():
    from digitrec.data.negatives import handwriting

    rng = np.random.default_rng(0)
    shapes = [*handwriting.LETTERS.values(), *handwriting.SYMBOLS.values()]
    shapes += [make(rng) for make in handwriting.DOODLES]
    for strokes in shapes:
        a, b = handwriting.draw_strokes(strokes, rng), handwriting.draw_strokes(strokes, rng)
        assert a.shape == (handwriting.SIDE, handwriting.SIDE) and (a > 0.5).sum() > 50
        assert not np.array_equal(a, b)             # each drawing is a hand of its own
    assert not set("OIlgqb") & set(handwriting.LETTERS)  # letters digits share, left out


def test_z_has_straight_bars_in_sharp_corners_and_s_no_bar_at_all():
    """The letters shaped like a 2 and a 5 are drawn by what tells them apart: a Z is three
    straight strokes meeting in two corners, an S one smooth curve (no corner sharper than
    a 5's bend), so neither is a digit drawn again."""
    from digitrec.data.negatives import handwriting

    zed, = handwriting.LETTERS["Z"]
    assert len(zed) == 4 and zed[0][1] == zed[1][1] and zed[2][1] == zed[3][1]  # two bars
    ess, = handwriting.LETTERS["S"]
    steps = np.diff(np.asarray(ess), axis=0)
    turns = np.degrees(np.abs(np.angle(np.exp(1j * np.diff(np.arctan2(steps[:, 1],
                                                                      steps[:, 0]))))))
    assert len(ess) > handwriting.CORNERS and turns.max() < 60     # smooth: no corner
