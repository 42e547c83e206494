"""Deterministic stand-in weights for the metric networks (pytorch-fid's Inception, upstream's
LPIPS), which the goldens use instead of the released weights: neither fits in the repository,
and the point is that vtp computes what the reference computes with whatever weights it is given.

Every tensor value is `low + (high - low) * u` in float64, rounded to float32, where `u` is the
i-th output of splitmix64 seeded with the FNV-1a 64 hash of the tensor's name, as
`(z >> 40) / 2**24`. `layout()` records each tensor's name, shape and (low, high), so the Swift
tests (VTPTestSupport's `StandInWeights`) rebuild the same file bit for bit.
"""
import math

import numpy as np
import torch

MASK = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def uniforms(name: str, count: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        i = np.arange(1, count + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(name.encode())) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def value_range(name: str, shape) -> tuple:
    if name.endswith("running_mean") or name.endswith("bn.bias"):
        return (-0.1, 0.1)
    if name.endswith("running_var") or name.endswith("bn.weight"):
        return (0.5, 1.5)
    if name.startswith("lin"):
        return (0.0, 0.1)
    if len(shape) >= 2:
        bound = math.sqrt(6.0 / int(np.prod(shape[1:])))
        return (-bound, bound)
    return (-0.05, 0.05)


def stand_in(name: str, shape) -> torch.Tensor:
    low, high = value_range(name, shape)
    count = int(np.prod(shape)) if len(shape) else 1
    values = (low + (high - low) * uniforms(name, count)).astype(np.float32)
    return torch.from_numpy(values.reshape(shape))


def fill(module: torch.nn.Module, skip=("num_batches_tracked", "scaling_layer.")) -> list:
    """Overwrites the module's parameters and buffers with stand-ins; returns the layout."""
    state = module.state_dict()
    layout = []
    for name, tensor in state.items():
        if any(s in name for s in skip):
            continue
        shape = list(tensor.shape)
        state[name] = stand_in(name, shape)
        low, high = value_range(name, shape)
        layout.append({"name": name, "shape": shape, "low": low, "high": high})
    module.load_state_dict(state)
    return layout
