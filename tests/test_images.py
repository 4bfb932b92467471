import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

from digitrec.examples import STROKES, draw_digit
from digitrec.reading import decode, images
from digitrec.reading import digit as digit_style


def mnist_style(digit: int = 2) -> np.ndarray:
    """A reference digit as MNIST would hold it: our chain applied to a clean drawing."""
    clean = draw_digit(digit, 140, pen=0.06, ink=255, paper=0, seed=digit, wobble=0)
    return images.clean_image(clean).digit


def bbox(digit: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero((digit > 0.3).any(axis=1))
    cols = np.flatnonzero((digit > 0.3).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def assert_close_to(result: np.ndarray, reference: np.ndarray) -> None:
    """Within a few pixels of the reference: same box, same centre, mostly the same ink."""
    assert result.shape == (28, 28) and result.dtype == np.float32
    assert result.min() >= 0 and result.max() <= 1
    assert np.abs(np.subtract(bbox(result), bbox(reference))).max() <= 2
    centre = np.subtract(ndimage.center_of_mass(result), ndimage.center_of_mass(reference))
    assert np.abs(centre).max() <= 1.0
    a, b = result > 0.5, reference > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.45


def test_reference_is_shaped_like_mnist():
    digit = mnist_style()
    top, bottom, left, right = bbox(digit)
    assert max(bottom - top, right - left) + 1 in (19, 20, 21, 22)
    cy, cx = ndimage.center_of_mass(digit)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1
    assert 2.0 <= digit_style.stroke_width(digit > 0.5) <= 3.6


def as_big_picture(reference: np.ndarray, scale: int = 20, canvas=(1400, 900),
                   where=(150, 80)) -> Image.Image:
    """The reference enlarged and put off-centre on a large black canvas."""
    big = Image.fromarray((reference * 255).astype(np.uint8)).resize(
        (28 * scale, 28 * scale), Image.BICUBIC)
    picture = Image.new("L", canvas, 0)
    picture.paste(big, where)
    return picture


def textured_paper(picture: Image.Image, seed: int = 0) -> Image.Image:
    """Dark ink on uneven, grainy paper: the picture inverted, lit from one side."""
    rng = np.random.default_rng(seed)
    ink = np.asarray(picture, dtype=np.float32) / 255
    height, width = ink.shape
    light = 200 + np.linspace(-40, 40, width)[None, :] + np.linspace(-20, 10, height)[:, None]
    grain = ndimage.gaussian_filter(rng.normal(0, 12, ink.shape), 1.5)
    paper = np.clip(light + grain - ink * 170, 0, 255)
    return Image.fromarray(paper.astype(np.uint8))


def reencode(picture: Image.Image, format: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, format=format, **options)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("digit", [2, 4, 7])
def test_enlarged_off_centre_digit_comes_back(digit):
    reference = mnist_style(digit)
    assert_close_to(images.clean_image(as_big_picture(reference)).digit, reference)


def test_inverted_on_textured_paper_as_jpeg_comes_back():
    reference = mnist_style(4)
    photo = reencode(textured_paper(as_big_picture(reference)).convert("RGB"), "JPEG",
                     quality=70)
    prepared = images.clean_image(photo)
    assert prepared.inverted
    assert_close_to(prepared.digit, reference)


def test_transparent_png_with_dark_strokes_comes_back():
    reference = mnist_style(7)
    alpha = as_big_picture(reference, scale=10, canvas=(600, 400), where=(300, 60))
    drawing = Image.new("RGBA", alpha.size, (10, 10, 10, 0))
    drawing.putalpha(alpha)
    prepared = images.clean_image(reencode(drawing, "PNG"))
    assert_close_to(prepared.digit, reference)


def test_thin_pen_on_a_large_picture_gets_mnist_thick_strokes():
    thin = draw_digit(3, 1600, pen=0.002, ink=0, paper=255, seed=0)
    digit = images.clean_image(thin).digit
    assert 2.0 <= digit_style.stroke_width(digit > 0.5) <= 3.6


def paint_program_digit(digit: int, pen: int, canvas=(1150, 650), where=(420, 100),
                        span: int = 150) -> Image.Image:
    """A digit drawn with a paint program's thin brush: black `pen`-px lines, no
    anti-aliasing, small on a large white canvas."""
    picture = Image.new("L", canvas, 255)
    draw = ImageDraw.Draw(picture)
    for stroke in STROKES[digit]:
        draw.line([(where[0] + x * span, where[1] + y * span) for x, y in stroke], fill=0,
                  width=pen)
    return picture


@pytest.mark.parametrize("pen", [1, 2])
@pytest.mark.parametrize("digit", [3, 7])
def test_thin_pen_on_a_large_canvas_is_found(digit, pen):
    reference = images.clean_image(paint_program_digit(digit, 6, (300, 300), (75, 75))).digit
    thin = images.clean_image(paint_program_digit(digit, pen)).digit
    assert_close_to(thin, reference)
    assert 2.0 <= digit_style.stroke_width(thin > 0.5) <= 3.6


def save_tagged_jpeg(path, picture: Image.Image, recorded_size: tuple[int, int]) -> None:
    """A JPEG whose EXIF says "turn 90 degrees clockwise to show" (orientation 6), as a
    phone writes, and records the picture size `recorded_size`."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0100], exif[0x0101] = recorded_size
    picture.convert("RGB").save(path, exif=exif, quality=95)


def test_exif_orientation_of_a_camera_picture_is_applied(tmp_path):
    reference = mnist_style(7)
    upright = as_big_picture(reference, scale=8, canvas=(300, 260), where=(38, 18))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as the camera stored it
    save_tagged_jpeg(tmp_path / "camera.jpg", stored, stored.size)
    prepared = images.clean_file(tmp_path / "camera.jpg")
    assert_close_to(prepared.digit, reference)
    assert prepared.as_stored is None


def test_exif_orientation_of_an_edited_picture_is_doubted(tmp_path):
    """Turned upright and cropped by an editor that kept the camera's tag and size: the tag
    is applied, as browsers do, but the digit as stored comes along to be read too."""
    reference = mnist_style(7)
    upright = as_big_picture(reference, scale=8, canvas=(300, 260), where=(38, 18))
    save_tagged_jpeg(tmp_path / "edited.jpg", upright, (4000, 2252))
    prepared = images.clean_file(tmp_path / "edited.jpg")
    assert_close_to(prepared.as_stored, reference)
    assert_close_to(np.rot90(prepared.digit), reference)  # the tag turned it sideways


def test_thick_marker_gets_thinner():
    thick = draw_digit(3, 200, pen=0.16, ink=0, paper=255, seed=0)
    digit = images.clean_image(thick).digit
    assert digit_style.stroke_width(digit > 0.5) <= 4.0


def test_redraw_gives_an_mnist_digit_the_style_of_a_prepared_picture():
    reference = mnist_style(4)
    assert digit_style.stroke_width(digit_style.redraw(reference) > 0.5) == pytest.approx(
        digit_style.stroke_width(reference > 0.5), abs=0.5)
    a, b = digit_style.redraw(reference) > 0.5, reference > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.9  # already in that style: kept as it is

    small = np.zeros((28, 28), np.float32)  # shrunk and off-centre, as some MNIST digits are
    small[2:22, 6:26] = np.asarray(Image.fromarray(reference).resize((20, 20), Image.BILINEAR))
    assert_close_to(digit_style.redraw(small), reference)
    thick = ndimage.grey_dilation(reference, size=(3, 3))
    assert 2.0 <= digit_style.stroke_width(digit_style.redraw(thick) > 0.5) <= 3.6
    assert not digit_style.redraw(np.zeros((28, 28), np.float32)).any()


def test_each_step_can_be_shown(tmp_path):
    from digitrec.reading.sheet import draw_steps

    picture = textured_paper(as_big_picture(mnist_style(3), scale=6, canvas=(300, 240),
                                            where=(60, 30)))
    steps: list = []
    prepared = images.clean_image(picture, steps)
    assert [name.split(".")[0] for name, _ in steps] == ["2", "3", "4", "5", "6", "7"]
    np.testing.assert_array_equal(steps[-1][1], prepared.digit)
    draw_steps([(picture, steps)], tmp_path / "steps.png", panel=100)
    with Image.open(tmp_path / "steps.png") as figure:
        assert figure.size[0] > 7 * 100 and figure.size[1] > 100


def test_specks_do_not_move_the_digit():
    reference = mnist_style(1)
    picture = as_big_picture(reference)
    pixels = np.asarray(picture).copy()
    pixels[850:856, 1300:1306] = 255  # a speck far from the digit
    pixels[20:23, 20:23] = 255
    assert_close_to(images.clean_image(Image.fromarray(pixels)).digit, reference)


def test_blank_picture_says_so():
    grain = np.random.default_rng(0).normal(225, 6, (650, 1150))
    for blank in (Image.new("L", (300, 200), 230),
                  Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8)),
                  Image.new("RGB", (64, 64), (0, 0, 0)),
                  Image.new("RGBA", (64, 64), (0, 0, 0, 0))):
        with pytest.raises(decode.ImageProblem, match="no ink found"):
            images.clean_image(blank.filter(ImageFilter.GaussianBlur(1)))


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "P", "1", "LA", "RGB"])
def test_every_mode_is_read(mode):
    reference = mnist_style(5)
    picture = textured_paper(as_big_picture(reference, scale=6, canvas=(300, 240),
                                            where=(60, 30)))
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(picture, dtype=np.uint16) * 257)
        assert converted.mode.startswith("I;16")
    elif mode == "P":
        converted = picture.convert("RGB").convert("P", palette=Image.ADAPTIVE)
    elif mode == "1":
        converted = picture.point(lambda v: 255 if v > 120 else 0).convert("1")
    else:
        converted = picture.convert(mode)
    assert_close_to(images.clean_image(converted).digit, reference)
