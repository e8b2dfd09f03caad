"""FxP-QNet's per-layer word-length allocation and post-training self-distillation.

The paper lowers each data structure's word length step by step while the network's prediction
error against the FP32 model stays within a budget, with no labels: the FP32 model is the
teacher. Its search order and loss are not published in what was available, so hwq defines them:

Search (:func:`allocate_word_lengths`)
    Every layer starts with weights and input activations at ``start_bits``, each with its MSE
    fraction length. A *step* tries lowering every data structure (a layer's weights, or its
    input activations) by one bit, measures the *disagreement* -- the fraction of calibration
    inputs whose top-1 class differs from the teacher's -- and keeps the candidate that saves
    the most memory bits per unit of added disagreement (ties: the earlier layer, weights first),
    provided the disagreement stays within ``budget``. Memory counts each weight once and each
    activation element of one input sample. It stops when no candidate fits or every structure
    is at ``min_bits``.
Self-distillation (:func:`self_distill`)
    Fine-tunes the quantized model (straight-through estimator, formats and scales fixed) to
    match the teacher's softened outputs (KL divergence at temperature ``T``) on the
    calibration inputs -- again no labels.
"""

import dataclasses

import torch
from torch.nn import functional as F

from ..errors import InputError
from .api import quantize
from .train import default_device

__all__ = ["Allocation", "disagreement", "allocate_word_lengths", "self_distill"]


@dataclasses.dataclass
class Allocation:
    """Result of :func:`allocate_word_lengths`.

    Attributes
    ----------
    model : QuantizedModel
        The model at the chosen word lengths.
    bits : dict
        ``{layer: {"weights": bits, "activations": bits}}``.
    disagreement : float
        Top-1 disagreement with the teacher on the calibration inputs.
    memory_bits : int
        Weight bits plus one sample's input-activation bits.
    history : list of dict
        Every accepted step: the structure lowered, its new width, disagreement and memory.
    """

    model: object
    bits: dict
    disagreement: float
    memory_bits: int
    history: list


def disagreement(model, teacher_logits, x):
    """Fraction of inputs whose top-1 class under ``model`` differs from the teacher's."""
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    return float((predicted != teacher_logits.argmax(dim=1)).float().mean())


def _quantize(model, bits, x):
    overrides = {name: {"weights": f"fxp{b['weights']}", "activations": f"fxp{b['activations']}"}
                 for name, b in bits.items()}
    return quantize(model, calibration=[x], overrides=overrides)


def _element_counts(qmodel, x):
    """``{(layer, "weights" | "activations"): elements}``: weights, and one sample's inputs."""
    sizes = {}
    hooks = [layer.register_forward_pre_hook(
        lambda module, args, name=name: sizes.__setitem__(name, args[0][0].numel()))
        for name, layer in qmodel.layers.items()]
    try:
        with torch.no_grad():
            qmodel(x[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return {(name, "weights"): layer.layer.weight.numel() for name, layer in qmodel.layers.items()} | \
        {(name, "activations"): sizes[name] for name in qmodel.layers}


def allocate_word_lengths(model, x, *, start_bits=8, min_bits=2, budget=0.01, log=None):
    """Lower word lengths layer by layer while the top-1 disagreement stays within ``budget``.

    Parameters
    ----------
    model : nn.Module
        The FP32 model (the teacher).
    x : torch.Tensor
        Calibration inputs (no labels needed).
    start_bits, min_bits : int
        Starting and smallest word lengths (2 to 16).
    budget : float
        Largest acceptable disagreement with the teacher, in ``[0, 1]``.

    Returns
    -------
    Allocation
    """
    if not 2 <= min_bits <= start_bits <= 16:
        raise InputError(f"need 2 <= min_bits <= start_bits <= 16, not min_bits={min_bits}, start_bits={start_bits}")
    if not 0 <= budget <= 1:
        raise InputError(f"budget is a fraction of inputs between 0 and 1, not {budget}")
    if len(x) == 0:
        raise InputError("calibration data is empty; pass at least one input")
    with torch.no_grad():
        teacher = model.eval()(x)
    probe = quantize(model, f"fxp{start_bits}", f"fxp{start_bits}", calibration=[x])
    bits = {name: {"weights": start_bits, "activations": start_bits} for name in probe.layers}
    sizes = _element_counts(probe, x)

    def memory_bits(bits):
        return sum(sizes[n, k] * b[k] for n, b in bits.items() for k in ("weights", "activations"))

    current = _quantize(model, bits, x)
    error = disagreement(current, teacher, x)
    if error > budget:
        raise InputError(f"at {start_bits} bits the model already disagrees with the teacher on {error:.1%} of the "
                       f"inputs, more than the budget {budget:.1%}; raise start_bits or the budget")
    history = []
    while True:
        best = None
        for name in bits:
            for kind in ("weights", "activations"):
                if bits[name][kind] <= min_bits:
                    continue
                trial = {n: dict(b) for n, b in bits.items()}
                trial[name][kind] -= 1
                candidate = _quantize(model, trial, x)
                trial_error = disagreement(candidate, teacher, x)
                if trial_error > budget:
                    continue
                value = sizes[name, kind] / max(trial_error - error, 1e-9)
                if best is None or value > best[0]:
                    best = (value, name, kind, trial, candidate, trial_error)
        if best is None:
            break
        _, name, kind, bits, current, error = best
        memory = memory_bits(bits)
        history.append({"layer": name, "structure": kind, "bits": bits[name][kind], "disagreement": error,
                        "memory_bits": memory})
        if log is not None:
            log(f"{name} {kind} -> {bits[name][kind]} bits: disagreement {error:.4f}, memory {memory} bits")
    return Allocation(current, bits, error, memory_bits(bits), history)


def self_distill(qmodel, teacher, x, *, epochs=5, lr=1e-3, temperature=4.0, batch_size=64, seed=0, device=None):
    """Fine-tune ``qmodel`` towards ``teacher``'s outputs on inputs ``x`` (no labels).

    Returns the final mean KL divergence.
    """
    if len(x) == 0:
        raise InputError("self-distillation needs at least one input")
    device = device or default_device()
    generator = torch.Generator().manual_seed(seed)
    teacher = teacher.to(device).eval()
    qmodel.to(device).train()
    optimizer = torch.optim.Adam(qmodel.parameters(), lr=lr)
    loss_value = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        total, batches = 0.0, 0
        for start in range(0, len(x), batch_size):
            batch = x[order[start:start + batch_size]].to(device)
            with torch.no_grad():
                target = F.softmax(teacher(batch) / temperature, dim=1)
            loss = F.kl_div(F.log_softmax(qmodel(batch) / temperature, dim=1), target, reduction="batchmean")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        loss_value = total / batches
    qmodel.eval()
    return loss_value
