#!/usr/bin/env python3
"""Reconstruction-metric goldens: PSNR and SSIM exactly as the official VTP reconstruction evaluation
(tools/test_reconstruction_hf.py) computes them, on the fixture tensors.

Writes Tests/Fixtures/reconstruction-metrics.json:
    {"generator": {...versions...}, "images": [{"psnr": ..., "ssim": ...}, ...], "batch_ssim": ...}
For every image i of Tests/Fixtures/vtp-tiny.expected.safetensors the original is
`clamp(transform_rev(pixel_values[i]), 0, 1)` and the reconstruction
`clamp(transform_rev(decoded_images[i]), 0, 1)`, with upstream's transform_rev
(Normalize(-mean/std, 1/std), ImageNet mean/std). PSNR is upstream's `calculate_psnr` on the
images times 255; SSIM is torchmetrics' StructuralSimilarityIndexMeasure(data_range=1.0) on that
image alone; `batch_ssim` is the metric on all images at once (what upstream records per batch).
The random-weight decoder's images are far from the inputs (SSIM near 0), so `perturbed` also
scores each original against itself plus `0.03·sin(0.37·k)` (k the flat index, computed in
float64, rounded to float32), clamped to [0, 1]: a close pair, SSIM near 1.

Regenerate (torch, torchvision, torchmetrics, safetensors; the official MiniMax-AI/VTP sources
importable, for calculate_psnr):
    PYTHONPATH=<checkout of MiniMax-AI/VTP> venv/bin/python scripts/reference/reconstruction_metrics.py
"""
import json
import os
import sys

import torch
import torchmetrics
from safetensors.torch import load_file
from torchmetrics.image import StructuralSimilarityIndexMeasure
from torchvision.transforms import Normalize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


def upstream_psnr():
    # The evaluation script imports its training stack at module level; fall back to reading the
    # function's source from it when those imports are not installed.
    try:
        from tools.test_reconstruction_hf import calculate_psnr
        return calculate_psnr
    except Exception:  # noqa: BLE001
        import ast
        import importlib.util
        spec = importlib.util.find_spec("vtp")
        base = os.path.dirname(os.path.dirname(spec.origin)) if spec else None
        path = os.path.join(base or ".", "tools", "test_reconstruction_hf.py")
        tree = ast.parse(open(path).read())
        fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "calculate_psnr")
        namespace = {"torch": torch}
        exec(compile(ast.Module(body=[fn], type_ignores=[]), path, "exec"), namespace)
        return namespace["calculate_psnr"]


def main():
    calculate_psnr = upstream_psnr()
    tensors = load_file(os.path.join(FIXTURES, "vtp-tiny.expected.safetensors"))
    transform_rev = Normalize([-m / s for m, s in zip(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)],
                              [1 / s for s in IMAGENET_DEFAULT_STD])
    original = torch.clamp(transform_rev(tensors["pixel_values"]), 0, 1)
    reconstruction = torch.clamp(transform_rev(tensors["decoded_images"]), 0, 1)
    images = []
    for i in range(original.shape[0]):
        ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        images.append({
            "psnr": calculate_psnr(original[i] * 255.0, reconstruction[i] * 255.0),
            "ssim": ssim(original[i:i + 1], reconstruction[i:i + 1]).item(),
        })
    perturbed = []
    for i in range(original.shape[0]):
        wave = (torch.sin(torch.arange(original[i].numel(), dtype=torch.float64) * 0.37) * 0.03).float()
        close = torch.clamp(original[i] + wave.reshape(original[i].shape), 0, 1)
        ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        perturbed.append({
            "psnr": calculate_psnr(original[i] * 255.0, close * 255.0),
            "ssim": ssim(original[i:i + 1], close[None]).item(),
        })
    batch = StructuralSimilarityIndexMeasure(data_range=1.0)(original, reconstruction).item()
    out = {
        "generator": {"torch": torch.__version__, "torchmetrics": torchmetrics.__version__,
                      "command": "scripts/reference/reconstruction_metrics.py"},
        "source": "vtp-tiny.expected.safetensors: pixel_values vs decoded_images",
        "images": images,
        "perturbed": perturbed,
        "batch_ssim": batch,
    }
    path = os.path.join(FIXTURES, "reconstruction-metrics.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
