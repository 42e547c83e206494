#!/usr/bin/env python3
"""End-to-end goldens for `vtp run reconstruction`: the official reconstruction evaluation
(MiniMax-AI/VTP tools/test_reconstruction_hf.py, its `test_reconstruction` function) run on a
small ImageFolder of the fixture photos with the tiny checkpoint, on the CPU.

Writes Tests/Fixtures/reconstruction-eval.json:
    {"generator": {...versions...}, "tree": {class: [fixture photo, ...]},
     "psnr": mean, "ssim": mean, "images": [{"path": "class/name", "psnr": ..., "ssim": ...,
     "reference_fnv1a64": ..., "reconstructed_sum": ..., "reconstructed_fnv1a64": ...}, ...]}
Images are in ImageFolder order (upstream's global index). The script runs with batch_size 1, so
its per-batch SSIM values are per-image values and its mean equals the per-image mean vtp
reports. `reference_fnv1a64` is FNV-1a (64-bit) of the RGB bytes of the PNG upstream saved as
`reference/ref_{i:06d}.png`; `reconstructed_*` describe `reconstructed/rec_{i:06d}.png`.

The script's LPIPS needs VGG16 weights from the network, and its rFID Inception weights: both are
replaced by stand-ins that compute nothing (their numbers are not part of these goldens). On a
machine without CUDA the script's `autocast(device_type='cuda')` blocks are disabled, so this is
its float32 computation, which vtp's default `--precision fp32` reproduces.

Regenerate (torch, torchvision, torchmetrics, safetensors, transformers 4.57.6, Pillow; the
official sources importable):
    PYTHONPATH=<checkout of MiniMax-AI/VTP> venv/bin/python scripts/reference/reconstruction_eval.py
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import PIL
import torch
import torchmetrics
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "fixtures")
TREE = {
    "cat": ["chelsea.jpg", "chelsea_gray.jpg", "chelsea_tiny.jpg"],
    "coffee": ["coffee.jpg", "coffee_cmyk.jpg", "coffee_palette.png"],
    "space": ["astronaut.png", "astronaut_rgba.png", "camera_gray.png", "rocket_progressive.jpg"],
}


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    # tools/__init__.py imports a module the repository does not ship: load the script by path.
    import importlib.util
    script = next(os.path.join(p, "tools", "test_reconstruction_hf.py") for p in sys.path
                  if os.path.exists(os.path.join(p, "tools", "test_reconstruction_hf.py")))
    spec = importlib.util.spec_from_file_location("test_reconstruction_hf", script)
    upstream = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(upstream)

    psnr_values, ssim_values = [], []
    original_psnr = upstream.calculate_psnr

    def recording_psnr(original, processed):
        value = original_psnr(original, processed)
        psnr_values.append(value)
        return value

    class NoLPIPS:
        def __init__(self, device="cpu"):
            self.model = None

    class RecordingSSIM:
        def __init__(self, metric):
            self.metric = metric

        def __call__(self, a, b):
            value = self.metric(a, b)
            ssim_values.append(value.item())
            return value

    original_ssim = upstream.get_ssim_metric
    upstream.calculate_psnr = recording_psnr
    upstream.LPIPS = NoLPIPS
    upstream.get_ssim_metric = lambda device: RecordingSSIM(original_ssim(device))
    upstream.calculate_fid_given_paths = lambda *args, **kwargs: None

    work = tempfile.mkdtemp(prefix="vtp-recon-golden-")
    try:
        data = os.path.join(work, "data")
        for cls, names in TREE.items():
            os.makedirs(os.path.join(data, cls))
            for name in names:
                shutil.copy(os.path.join(SHARED, "images", name), os.path.join(data, cls, name))
        out = os.path.join(work, "out")
        result = upstream.test_reconstruction(model_path=os.path.join(SHARED, "vtp-tiny"), data_path=data, output_path=out,
                                              device="cpu", batch_size=1, precision="fp32", save_images=True, num_workers=0)
        paths = [f"{cls}/{name}" for cls in sorted(TREE) for name in sorted(TREE[cls])]
        assert len(paths) == len(psnr_values) == len(ssim_values), (len(paths), len(psnr_values), len(ssim_values))
        images = []
        for i, path in enumerate(paths):
            ref = np.asarray(Image.open(os.path.join(out, "reference", f"ref_{i:06d}.png")).convert("RGB"))
            rec = np.asarray(Image.open(os.path.join(out, "reconstructed", f"rec_{i:06d}.png")).convert("RGB"))
            images.append({"path": path, "psnr": psnr_values[i], "ssim": ssim_values[i],
                           "reference_fnv1a64": str(fnv1a64(ref.tobytes())),
                           "reconstructed_fnv1a64": str(fnv1a64(rec.tobytes())),
                           "reconstructed_sum": int(rec.astype(np.int64).sum())})
    finally:
        shutil.rmtree(work)

    golden = {
        "generator": {"torch": torch.__version__, "torchmetrics": torchmetrics.__version__, "pillow": PIL.__version__,
                      "numpy": np.__version__, "script": "MiniMax-AI/VTP tools/test_reconstruction_hf.py test_reconstruction",
                      "batch_size": 1, "precision": "fp32 (cpu)"},
        "tree": TREE, "psnr": float(result["psnr"]), "ssim": float(result["ssim"]), "images": images,
    }
    target = os.path.join(ROOT, "Tests", "Fixtures", "reconstruction-eval.json")
    with open(target, "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {target}: psnr {golden['psnr']:.6f} ssim {golden['ssim']:.6f} over {len(images)} images")


if __name__ == "__main__":
    sys.exit(main())
