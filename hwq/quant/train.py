"""Training loops: the float model, and straight-through-estimator QAT of a quantized one.

The same loop trains both: a :class:`~hwq.quant.api.QuantizedModel` fake-quantizes in its forward
pass with straight-through gradients, so training it fine-tunes the float weights under the
quantizers chosen at calibration (their formats and scales stay fixed). Runs on a GPU when one
is present (``device=None``), on the CPU otherwise.
"""

import contextlib

import torch
from torch import nn
from tqdm import tqdm

from ..errors import InputError
from ..registry import FORMAT_NAME, Registry

__all__ = ["default_device", "train", "evaluate", "QAT_PROCEDURES", "quantization_aware_training"]

#: quantization-aware training procedures of formats whose paper trains its own way, by format
#: name, each ``procedure(qmodel, x, y, *, epochs, seed, **options)``; other formats train with
#: straight-through QAT (:func:`train`)
QAT_PROCEDURES = Registry("QAT procedure", packages=("hwq.quant",), **FORMAT_NAME)


def default_device():
    """``"cuda"`` when a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _restore_threads(threads):
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train(model, x, y, *, epochs=20, lr=1e-2, batch_size=64, seed=0, device=None, progress=False,
          description="training"):
    """Train ``model`` on tensors ``x``, ``y`` (class indices) with Adam and cross-entropy.

    ``progress=True`` shows a progress bar of the epochs (tqdm, on stderr, removed when done)
    headed ``description``, with the last epoch's mean loss; nothing is printed otherwise.

    On the CPU the loop runs on one intra-op thread, so that the trained weights do not depend on
    the machine's core count (torch splits a reduction's sums by thread, and float addition is
    not associative: with 2 and with 4 threads the digits CNN ends up with different weights and
    a different accuracy). The caller's thread setting is restored afterwards.

    Returns the model (trained in place) and the last epoch's mean loss.
    """
    if len(x) == 0 or len(x) != len(y):
        raise InputError(f"training data needs as many labels as inputs and at least one ({len(x)} inputs, {len(y)} labels)")
    device = device or default_device()
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    loss_sum = 0.0
    threads = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    with _restore_threads(threads), tqdm(total=epochs, desc=description, unit="epoch", leave=False, disable=not progress) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            loss_sum, batches = 0.0, 0
            for start in range(0, len(x), batch_size):
                index = order[start:start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(x[index].to(device)), y[index].to(device))
                loss.backward()
                optimizer.step()
                loss_sum, batches = loss_sum + loss.item(), batches + 1
            loss_sum /= batches
            bar.set_postfix(loss=f"{loss_sum:.4f}", refresh=False)
            bar.update()
    model.eval()
    return model, loss_sum


def evaluate(model, x, y, *, device=None):
    """Top-1 accuracy of ``model`` on ``x``, ``y``."""
    device = device or default_device()
    model.to(device).eval()
    with torch.no_grad():
        predicted = model(x.to(device)).argmax(dim=1).cpu()
    return float((predicted == y).float().mean())


def quantization_aware_training(qmodel, x, y, *, epochs, seed=0, **options):
    """Fine-tune ``qmodel`` the way its weight format's paper does.

    The procedure registered in :data:`QAT_PROCEDURES` under the weight format of the model's
    first quantized layer (e.g. UNIQ's gradual noise injection), else straight-through QAT with
    :func:`train` at ``lr=1e-3``. ``options`` go to the procedure. Returns ``qmodel``.
    """
    first = next(iter(qmodel.layers.values()))
    procedure = QAT_PROCEDURES.get(first.weight_quantizer.format.name)
    if procedure is not None:
        return procedure(qmodel, x, y, epochs=epochs, seed=seed, **options)
    options.setdefault("description", "QAT")
    train(qmodel, x, y, epochs=epochs, lr=options.pop("lr", 1e-3), seed=seed, **options)
    return qmodel
