"""hwq.models.photos: the bundled photos load offline; crops are seeded, normalised and checked."""

from pathlib import Path

import numpy as np
import pytest
import torch

from hwq.errors import InputError
from hwq.models.photos import PHOTOS, centre_crops, crop_boxes, load_photos, photo_crops


def test_photo_files_ship_inside_the_packages():
    # skimage.data reads a file of its own distribution before it would try a download (pooch)
    import skimage.data
    import sklearn.datasets
    skimage_dir = Path(skimage.data.__file__).parent
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
                 "motorcycle_right.png", "motorcycle_disp.npz"):
        assert (skimage_dir / name).is_file(), name
    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    assert (sklearn_dir / "china.jpg").is_file() and (sklearn_dir / "flower.jpg").is_file()


def test_photos_load_offline_from_the_installed_packages():
    photos = load_photos()
    assert tuple(photos) == PHOTOS == ("china", "flower", "astronaut", "coffee", "chelsea", "rocket", "motorcycle")
    sizes = {name: image.shape for name, image in photos.items()}
    assert sizes == {"china": (427, 640, 3), "flower": (427, 640, 3), "astronaut": (512, 512, 3),
                     "coffee": (400, 600, 3), "chelsea": (300, 451, 3), "rocket": (427, 640, 3),
                     "motorcycle": (500, 741, 3)}
    for image in photos.values():
        assert image.dtype == np.uint8 and not image.flags.writeable
        assert image.std() > 20                      # a photo, not a blank placeholder


def test_crops_shape_dtype_range():
    x, photos = photo_crops(16, seed=3, size=64)
    assert x.shape == (16, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert x.std() > 0.1
    assert photos == tuple(PHOTOS[i % 7] for i in range(16))


def test_same_seed_identical_different_seed_differs():
    a, _ = photo_crops(14, seed=5, size=48)
    b, _ = photo_crops(14, seed=5, size=48)
    c, _ = photo_crops(14, seed=6, size=48)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # every crop differs from the other seed's crop of the same photo
    assert ((a - c).abs().flatten(1).amax(1) > 0.1).all()


def test_fewer_crops_are_a_prefix():
    many, _ = photo_crops(20, seed=2, size=40)
    few, _ = photo_crops(9, seed=2, size=40)
    assert torch.equal(few, many[:9])


def test_boxes_lie_inside_their_photos_and_vary():
    photos = load_photos()
    names, boxes = crop_boxes(700, seed=0)
    assert boxes.shape == (700, 4) and boxes.dtype == np.int64
    heights = np.array([photos[n].shape[0] for n in names])
    widths = np.array([photos[n].shape[1] for n in names])
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= heights).all() and (left + w <= widths).all()
    area = h * w / (heights * widths)
    assert area.min() > 0.2 and area.max() <= 1
    assert np.ptp(area) > 0.5 and len(set(zip(names, map(tuple, boxes.tolist())))) > 690
    assert all(names.count(n) == 100 for n in PHOTOS)


def test_centre_crops():
    x, names = centre_crops(size=32)
    assert x.shape == (7, 3, 32, 32) and names == PHOTOS
    assert x.min() >= -1 and x.max() <= 1
    # the antialiased resize of the centred square: the mean colour is the square's
    chelsea = load_photos()["chelsea"][:, 75:375].astype(np.float64)
    assert np.allclose(x[4].mean((1, 2)).numpy(), (chelsea.mean((0, 1)) / 255 - 0.5) / 0.5, atol=0.02)


@pytest.mark.parametrize("kwargs, match", [
    ({"count": 0}, "count"), ({"count": -3}, "count"), ({"count": 2.0}, "count"), ({"count": True}, "count"),
    ({"count": 1, "size": 31}, "size"), ({"count": 1, "size": 0}, "size"),
    ({"count": 1, "seed": -1}, "seed"), ({"count": 1, "seed": 1.5}, "seed"),
    ({"count": 1, "scale": (0, 1)}, "scale"), ({"count": 1, "scale": (0.5, 1.5)}, "scale"),
    ({"count": 1, "scale": (0.9, 0.5)}, "scale"), ({"count": 1, "scale": 0.5}, "scale"),
    ({"count": 1, "ratio": (0, 1)}, "ratio"), ({"count": 1, "ratio": (2, 1)}, "ratio"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        photo_crops(**kwargs)


def test_bad_centre_crop_size():
    with pytest.raises(InputError, match="size"):
        centre_crops(size=8)
