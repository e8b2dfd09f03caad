"""Evaluation crops from photos that ship inside installed packages: nothing is downloaded.

Seven RGB photos (uint8, ``(H, W, 3)``), all found offline:

===============  ==================================================  ==========
name             source                                              size
===============  ==================================================  ==========
``china``        :func:`sklearn.datasets.load_sample_images`          427 x 640
``flower``       :func:`sklearn.datasets.load_sample_images`          427 x 640
``astronaut``    :func:`skimage.data.astronaut`                       512 x 512
``coffee``       :func:`skimage.data.coffee`                          400 x 600
``chelsea``      :func:`skimage.data.chelsea`                         300 x 451
``rocket``       :func:`skimage.data.rocket`                          427 x 640
``motorcycle``   :func:`skimage.data.stereo_motorcycle` (left view)   500 x 741
===============  ==================================================  ==========

These are the only images of scikit-image 0.22+ that load without ``pooch`` and a network
connection among its colour photos (the others need a download); scikit-learn's two are files of
its distribution.

:func:`photo_crops` draws seeded random-resized crops from them (Inception-style: a random area
fraction and aspect ratio), :func:`centre_crops` the largest centred square of each. Both return
float32 tensors normalised for :mod:`hwq.models.efficientnet_lite0` (``(x / 255 - 0.5) / 0.5``).

Seven photos are few: many crops of them make a benchmark of *agreement* between a model and its
quantized copy, not an accuracy estimate of ImageNet, and crops of one photo are not independent.
"""

import functools
import math

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import InputError
from .efficientnet_lite0 import MEAN, STD, normalize

__all__ = ["PHOTOS", "MIN_SIZE", "SCALE", "RATIO", "load_photos", "crop_boxes", "photo_crops", "centre_crops"]

#: photo names, in the order crops cycle through them
PHOTOS = ("china", "flower", "astronaut", "coffee", "chelsea", "rocket", "motorcycle")
#: smallest crop side (EfficientNet-Lite0 halves its input five times)
MIN_SIZE = 32
#: default range of a crop's area as a fraction of its photo's
SCALE = (0.25, 1.0)
#: default range of a crop's aspect ratio (width / height), sampled log-uniformly
RATIO = (3 / 4, 4 / 3)


@functools.lru_cache(maxsize=1)
def _photos():
    try:
        from sklearn.datasets import load_sample_images
        from skimage import data
    except ImportError as exc:
        raise InputError(f"the evaluation photos need scikit-learn and scikit-image ({exc}); "
                         "install them with: pip install 'hwq[models]'") from None
    china, flower = load_sample_images().images            # filenames china.jpg, flower.jpg, in this order
    images = (china, flower, data.astronaut(), data.coffee(), data.chelsea(), data.rocket(),
              data.stereo_motorcycle()[0])
    out = {}
    for name, image in zip(PHOTOS, images):
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"photo {name!r} has shape {image.shape}, expected (H, W, 3)")
        image.setflags(write=False)
        out[name] = image
    return out


def load_photos():
    """The seven photos by name (in :data:`PHOTOS` order), uint8 ``(H, W, 3)`` RGB, read-only.

    Loaded once per process and cached.

    Raises
    ------
    InputError
        If scikit-learn or scikit-image is missing.
    """
    return dict(_photos())


@functools.lru_cache(maxsize=1)
def _photo_tensors():
    """Each photo as float32 ``(1, 3, H, W)`` pixel values 0..255."""
    return {name: torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()
            for name, image in _photos().items()}


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _check_range(name, value, low, high):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a pair (low, high) of numbers, not {value!r}") from None
    if not (low < a <= b <= high):
        raise InputError(f"{name} must satisfy {low} < low <= high <= {high}, not {value!r}")
    return a, b


def _resize(photo, box, size):
    """Crop ``box = (top, left, height, width)`` of ``photo`` (1, 3, H, W) and resize it to ``size``.

    Bilinear with antialiasing (a triangle filter as wide as the scale factor when shrinking), so
    a crop of a large region is an area average, not an aliased subsample. The filter's weights
    are non-negative; the clamp only removes float rounding (255.00003), keeping 0..255 exact.
    """
    top, left, height, width = box
    region = photo[:, :, top:top + height, left:left + width]
    out = F.interpolate(region, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0, 255)


def crop_boxes(count, *, seed=0, scale=SCALE, ratio=RATIO):
    """The crop boxes of :func:`photo_crops`: which photo, and where.

    Crop ``i`` comes from photo ``PHOTOS[i % 7]`` and its box from row ``i`` of a ``(count, 4)``
    draw of ``numpy.random.default_rng(seed)``: area fraction uniform in ``scale``, aspect ratio
    (width / height) log-uniform in ``ratio``, then a uniform position. A side longer than the
    photo's is cut to it (which narrows that crop's aspect ratio), rather than redrawn as
    torchvision does, so every crop costs one draw. Crop ``i`` does not depend on ``count``:
    fewer crops are a prefix of more.

    Returns
    -------
    photos : tuple of str
        The photo of each crop.
    boxes : numpy.ndarray
        ``(count, 4)`` int64 ``(top, left, height, width)`` in that photo's pixels.
    """
    count = _check_int("count", count, 1)
    seed = _check_int("seed", seed, 0)
    scale = _check_range("scale", scale, 0.0, 1.0)
    ratio = _check_range("ratio", ratio, 0.0, math.inf)
    shapes = np.array([image.shape[:2] for image in _photos().values()], dtype=np.float64)
    index = np.arange(count) % len(PHOTOS)
    height, width = shapes[index, 0], shapes[index, 1]
    u = np.random.default_rng(seed).random((count, 4))
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    aspect = np.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, 1])
    w = np.clip(np.rint(np.sqrt(area * aspect)), 1, width)
    h = np.clip(np.rint(np.sqrt(area / aspect)), 1, height)
    top = np.floor((height - h + 1) * u[:, 2])
    left = np.floor((width - w + 1) * u[:, 3])
    boxes = np.stack([top, left, h, w], axis=1).astype(np.int64)
    return tuple(PHOTOS[i] for i in index), boxes


def photo_crops(count, *, seed=0, size=224, scale=SCALE, ratio=RATIO):
    """``count`` seeded random-resized crops of the photos, normalised for EfficientNet-Lite0.

    Parameters
    ----------
    count : int
        Number of crops, at least 1; they cycle through :data:`PHOTOS` (so each photo gets
        ``count // 7`` or one more).
    seed : int
        Seed of the crop boxes (:func:`crop_boxes`). The same seed gives the identical tensor.
    size : int
        Side of the square output, at least :data:`MIN_SIZE`.
    scale : (float, float)
        Range of the crop's area as a fraction of the photo's, within (0, 1]. The default
        (0.25, 1) is narrower than Inception training's (0.08, 1): an 8 % crop of these photos
        is often bare texture (sky, wall) that no ImageNet class describes.
    ratio : (float, float)
        Range of the crop's aspect ratio (width / height), Inception's (3/4, 4/3) by default.

    Returns
    -------
    images : torch.Tensor
        float32 ``(count, 3, size, size)``, RGB, ``(x / 255 - 0.5) / 0.5`` of pixel values
        0..255, so in [-1, 1]. About 0.6 MB per crop at size 224.
    photos : tuple of str
        The photo each crop came from.

    Raises
    ------
    InputError
        ``count < 1``, ``size < MIN_SIZE``, a negative seed, a bad ``scale`` or ``ratio``.
    """
    size = _check_int("size", size, MIN_SIZE)
    photos, boxes = crop_boxes(count, seed=seed, scale=scale, ratio=ratio)
    tensors = _photo_tensors()
    images = torch.empty((len(photos), 3, size, size), dtype=torch.float32)
    for i, (name, box) in enumerate(zip(photos, boxes.tolist())):
        images[i] = _resize(tensors[name], box, size)[0]
    return images.sub_(MEAN).div_(STD), photos          # normalize(), in place: no second copy


def centre_crops(size=224):
    """The largest centred square of each photo, resized to ``size``, normalised.

    Returns
    -------
    images : torch.Tensor
        float32 ``(7, 3, size, size)`` in :data:`PHOTOS` order, as :func:`photo_crops`.
    photos : tuple of str
        :data:`PHOTOS`.
    """
    size = _check_int("size", size, MIN_SIZE)
    images = []
    for name, photo in _photo_tensors().items():
        height, width = photo.shape[2:]
        side = min(height, width)
        images.append(_resize(photo, ((height - side) // 2, (width - side) // 2, side, side), size))
    return normalize(torch.cat(images)), PHOTOS
