"""The worked example: a small CNN on scikit-learn's digits data set (ships with scikit-learn,
no download). Trains in seconds on a CPU."""

import torch
from torch import nn

__all__ = ["load_digits_tensors", "DigitsCNN", "train_digits_cnn"]


def load_digits_tensors(test_fraction=0.25, seed=0):
    """``(x_train, y_train, x_test, y_test)``: 8x8 images scaled to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed,
                                                        stratify=y)
    return x_train, y_train, x_test, y_test


class DigitsCNN(nn.Module):
    """conv-BN-ReLU x2, max-pool, a residual conv block, global average pool, linear."""

    def __init__(self, width=16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 3, padding=1)
        self.relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = self.relu(self.conv3(x)) + x
        return self.fc(torch.flatten(self.gap(x), 1))


def train_digits_cnn(epochs=15, seed=0, device=None, progress=False):
    """Train :class:`DigitsCNN`; return ``(model, (x_train, y_train, x_test, y_test))``.

    ``progress=True`` shows a progress bar of the epochs (:func:`hwq.quant.train.train`)."""
    from .train import train
    torch.manual_seed(seed)
    data = load_digits_tensors(seed=seed)
    model = DigitsCNN()
    train(model, data[0], data[1], epochs=epochs, lr=5e-3, seed=seed, device=device, progress=progress,
          description="float training")
    return model.cpu(), data
