"""UNIQ's gradual noise-injection training, layer by layer.

Stages run over the quantized layers in execution order. In the stage of layer ``i``: layers
before it are quantized and frozen, layer ``i``'s weights go through noise injection
(:func:`hwq.quant.uniq_noise.noise_quantize` with the Gaussian fitted to its current weights,
resampled on every forward pass from a generator seeded by ``seed`` and the stage) while
everything else of it trains, and later layers run in floating point. At the end of the stage layer ``i``'s k-quantile levels are refitted to its
trained weights and it is frozen. After the last stage every layer is quantized.
"""

import torch
from tqdm import tqdm

from ..errors import InputError
from ..formats.uniq import fit_distribution
from .calibrate import calibrate
from .train import QAT_PROCEDURES, train
from .uniq_noise import noise_quantize

__all__ = ["uniq_gradual_training", "uniq_qat"]


def uniq_gradual_training(qmodel, x, y, *, epochs_per_stage=1, lr=1e-3, seed=0, device=None, log=None,
                          progress=False):
    """Train a :class:`~hwq.quant.api.QuantizedModel` whose weights are UNIQ, stage by stage.

    ``log``, when given, is called with a line at the end of every stage; ``progress=True`` shows
    progress bars of the stages and of each stage's epochs (tqdm, on stderr, removed when done).
    Nothing is printed otherwise.

    Returns ``qmodel`` (trained in place, every layer quantized and trainable again).
    """
    layers = list(qmodel.layers.items())
    for name, layer in layers:
        if layer.weight_quantizer.format.name != "uniq":
            raise InputError(f"layer {name!r} has {layer.weight_quantizer.format.name} weights; "
                           "UNIQ's gradual training needs uniq weights in every quantized layer")
    stages = tqdm(layers, desc="UNIQ noise-injection stages", unit="stage", leave=False, disable=not progress)
    for index, (name, layer) in enumerate(stages):
        stages.set_postfix(layer=name)
        bits = layer.weight_quantizer.format.bits
        dist = fit_distribution(layer.layer.weight.detach().cpu().double().numpy(), "gaussian")
        layer.set_mode("noise", _seeded_noise(dist, bits, seed + index))
        for later_name, later in layers[index + 1:]:
            later.set_mode("float")
        train(qmodel, x, y, epochs=epochs_per_stage, lr=lr, seed=seed + index, device=device, progress=progress,
              description=f"UNIQ stage {index + 1} ({name})")
        layer.weight_quantizer = calibrate(layer.weight_quantizer.spec, layer.layer.weight.detach().cpu().double().numpy(),
                                           role="weight")
        layer.set_mode("quantized")
        for parameter in layer.parameters():
            parameter.requires_grad_(False)
        if log is not None:
            log(f"UNIQ stage {index + 1}/{len(layers)}: {name} quantized")
    for _, layer in layers:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    return qmodel


def _seeded_noise(dist, bits, seed):
    """The noise-injection quantizer of one stage, its noise drawn from its own generator seeded
    with ``seed`` (one per device): the stage's result depends on ``seed`` alone, not on what
    else used torch's global random state before it."""
    generators = {}

    def quantize(w):
        if w.device not in generators:
            generators[w.device] = torch.Generator(device=w.device).manual_seed(seed)
        return noise_quantize(w, dist, bits, generator=generators[w.device])
    return quantize


@QAT_PROCEDURES.register("uniq")
def uniq_qat(qmodel, x, y, *, epochs, seed=0, **options):
    """UNIQ's QAT procedure: :func:`uniq_gradual_training` with ``epochs`` per stage."""
    return uniq_gradual_training(qmodel, x, y, epochs_per_stage=epochs, seed=seed, **options)
