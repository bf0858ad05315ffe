import cv2
import numpy as np
import pytest

from posekit.data.transforms import apply_affine, crop_transform, invert_affine, to_rgb_uint8, warp_crop
from posekit.errors import PosekitError


@pytest.mark.parametrize("degrees", [0.0, 30.0, -90.0, 135.0])
def test_crop_transform_agrees_with_cv2_rotation_matrix(degrees):
    center, size, out = (123.5, 56.25), 80.0, 256   # float32-exact: cv2 stores the centre as float
    m = crop_transform(center, size, np.radians(degrees), out)
    reference = cv2.getRotationMatrix2D(center, degrees, out / size)
    np.testing.assert_allclose(m[:, :2], reference[:, :2], atol=1e-12)
    # cv2 keeps the centre in place; the crop moves it to the output's middle pixel centre.
    np.testing.assert_allclose(m[:, 2] - reference[:, 2], (out - 1) / 2 - np.array(center), atol=1e-9)


def test_window_edges_land_on_the_output_edges():
    m = crop_transform((100.0, 50.0), (40.0, 20.0), 0.0, (80, 60))
    corners = apply_affine([[80.0, 40.0], [120.0, 60.0], [100.0, 50.0]], m)
    np.testing.assert_allclose(corners, [[-0.5, -0.5], [79.5, 59.5], [39.5, 29.5]])


def test_positive_rotation_turns_the_window_clockwise():
    # Window turned +90 degrees: its "up" points to image +x, so the point right of the centre
    # appears above the crop's centre.
    m = crop_transform((50.0, 50.0), 20.0, np.pi / 2, 21)
    np.testing.assert_allclose(apply_affine([60.0, 50.0], m), [10.0, -0.5], atol=1e-12)
    np.testing.assert_allclose(apply_affine([50.0, 40.0], m), [-0.5, 10.0], atol=1e-12)


def test_round_trip_points_to_crop_and_back():
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = crop_transform(rng.uniform(-100, 800, 2), rng.uniform(5, 900, 2), rng.uniform(-4, 4),
                           rng.integers(8, 512, 2))
        points = rng.uniform(-1000, 2000, (7, 3, 2))
        back = apply_affine(apply_affine(points, m), invert_affine(m))
        np.testing.assert_allclose(back, points, atol=1e-9, rtol=0)
    assert np.isnan(apply_affine([np.nan, 1.0], m)).all()


def test_warp_crop_puts_pixels_where_the_matrix_says():
    image = np.zeros((21, 31), dtype=np.uint8)
    image[5, 15] = 255                                  # x = 15, y = 5
    m = crop_transform((10.0, 10.0), 21.0, np.pi / 2, 21)  # pixel centres map onto pixel centres
    crop = warp_crop(image, m, 21)
    x, y = apply_affine([15.0, 5.0], m)
    assert np.unravel_index(np.argmax(crop), crop.shape) == (round(y), round(x))
    assert crop.max() == 255
    # Border modes: a window past the image edge repeats the edge or fills zeros.
    ones = np.full((4, 4, 3), 7, np.uint8)
    far = crop_transform((10.0, 10.0), 4.0, 0.0, 4)
    assert (warp_crop(ones, far, 4, border="replicate") == 7).all()
    assert (warp_crop(ones, far, 4, border="zero") == 0).all()
    with pytest.raises(PosekitError, match="border"):
        warp_crop(ones, far, 4, border="wrap")


def test_to_rgb_uint8_converts_gray_and_drops_alpha():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb_uint8(gray)
    assert rgb.shape == (3, 4, 3) and all((rgb[..., c] == gray).all() for c in range(3))
    assert to_rgb_uint8(gray[:, :, None]).shape == (3, 4, 3)
    rgba = np.dstack([rgb, np.full((3, 4), 9, np.uint8)])
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgb)
    with pytest.raises(PosekitError, match="uint8"):
        to_rgb_uint8(rgb.astype(np.float32))
    with pytest.raises(PosekitError, match="shape"):
        to_rgb_uint8(np.zeros((3, 4, 2), np.uint8))
    with pytest.raises(PosekitError, match="shape"):
        to_rgb_uint8(np.zeros((0, 4, 3), np.uint8))


def test_bad_arguments_are_posekit_errors():
    with pytest.raises(PosekitError, match="size"):
        crop_transform((0, 0), 0.0)
    with pytest.raises(PosekitError, match="center"):
        crop_transform((0, np.nan), 10.0)
    with pytest.raises(PosekitError, match="singular"):
        invert_affine(np.zeros((2, 3)))
    with pytest.raises(PosekitError, match="2x3"):
        apply_affine([0.0, 0.0], np.eye(3))
    with pytest.raises(PosekitError, match=r"\(\.\.\., 2\)"):
        apply_affine(np.zeros((4, 3)), np.eye(2, 3))
