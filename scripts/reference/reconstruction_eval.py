#!/usr/bin/env python3
"""End-to-end goldens for `vtp run reconstruction`: the official reconstruction evaluation
(MiniMax-AI/VTP tools/test_reconstruction_hf.py, its `test_reconstruction` function) run on a
small ImageFolder of the fixture photos with the tiny checkpoint, on the CPU.

Writes, under Tests/Fixtures:
- reconstruction-eval.json: {"generator": {...versions...}, "tree": {class: [fixture photo, ...]},
  "psnr", "ssim", "lpips" (the script's means), "images": [{"path": "class/name", "psnr", "ssim",
  "lpips", "reference_fnv1a64", "reconstructed_sum", "reconstructed_fnv1a64"}, ...],
  "rfid_by_script" (what the script's rFID step returned), "fid_of_features", "fid_synthetic"};
- reconstruction-eval-fid-features.safetensors: pytorch-fid's `get_activations` of the saved
  `reference/` and `reconstructed/` PNGs (`reference`, `reconstructed`, each (N, 2048));
- metric-weights-layout.json: name, shape and value range of every stand-in weight (see
  metric_weights.py), for the tests to rebuild the same weight files.
Images are in ImageFolder order (upstream's global index). The script runs with batch_size 1, so
its per-batch SSIM and LPIPS values are per-image values and its means equal the per-image means
vtp reports. `reference_fnv1a64` is FNV-1a (64-bit) of the RGB bytes of the PNG upstream saved as
`reference/ref_{i:06d}.png`; `reconstructed_*` describe `reconstructed/rec_{i:06d}.png`.

LPIPS (torchvision's VGG16 plus the LPIPS lin layers) and pytorch-fid's FID Inception run with
stand-in weights (metric_weights.py): the released ones come from the network and do not fit in
the repository. With ten images and 2048 features the covariances are singular, so the FID of
these features is not a meaningful number (`fid_of_features` records what pytorch-fid's
`calculate_frechet_distance` gave, or its error); `fid_synthetic` is that function on 256
generated 64-wide feature rows, where the square root is well conditioned. On a machine without
CUDA the script's `autocast(device_type='cuda')` blocks are disabled, so this is its float32
computation, which vtp's default `--precision fp32` reproduces.

Regenerate (torch, torchvision, torchmetrics, pytorch-fid, scipy, safetensors, transformers 4.57.6, Pillow; the
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
from safetensors.numpy import save_file
import torch
import torchmetrics
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metric_weights  # noqa: E402

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

    class RecordingSSIM:
        def __init__(self, metric):
            self.metric = metric

        def __call__(self, a, b):
            value = self.metric(a, b)
            ssim_values.append(value.item())
            return value

    # LPIPS with stand-in weights: torchvision's VGG16 built without its download, every weight
    # (VGG and the lin layers) replaced by metric_weights' values; the scaling constants kept.
    import torchvision
    import vtp.utils.lpips as lpips_module
    layouts = {}
    lpips_module.models = type("Models", (), {"vgg16": staticmethod(lambda pretrained=True: torchvision.models.vgg16(weights=None))})

    def stand_in_lpips(self, name="vgg_lpips"):
        layouts["lpips"] = metric_weights.fill(self)
    lpips_module.LPIPS.load_from_pretrained = stand_in_lpips
    lpips_values = []
    original_lpips = upstream.LPIPS.__call__

    def recording_lpips(self, a, b):
        value = original_lpips(self, a, b)
        lpips_values.extend(value.reshape(-1).tolist())
        return value
    upstream.LPIPS.__call__ = recording_lpips

    # pytorch-fid's FID Inception built the way its fid_inception_v3 builds it, with stand-in
    # weights instead of the released ones.
    import pytorch_fid.inception as fid_inception
    from pytorch_fid import fid_score

    def stand_in_inception():
        net = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        net.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
        net.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
        layouts["inception"] = metric_weights.fill(net)
        return net
    fid_inception.fid_inception_v3 = stand_in_inception
    fid_values = []
    original_fid = upstream.calculate_fid_given_paths

    def recording_fid(*args, **kwargs):
        kwargs["num_workers"] = 0
        value = original_fid(*args, **kwargs)
        fid_values.append(value)
        return value

    original_ssim = upstream.get_ssim_metric
    upstream.calculate_psnr = recording_psnr
    upstream.get_ssim_metric = lambda device: RecordingSSIM(original_ssim(device))
    upstream.calculate_fid_given_paths = recording_fid

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
                           "reconstructed_sum": int(rec.astype(np.int64).sum()), "lpips": lpips_values[i]})
        # pytorch-fid's own activations of the two saved folders, as its calculate_fid_given_paths reads them.
        model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
        features = {}
        for side, folder in (("reference", "reference"), ("reconstructed", "reconstructed")):
            files = sorted(os.path.join(out, folder, f) for f in os.listdir(os.path.join(out, folder)))
            features[side] = fid_score.get_activations(files, model, batch_size=50, dims=2048, device="cpu",
                                                       num_workers=0).astype(np.float32)
        try:
            ref, rec = features["reference"], features["reconstructed"]
            pair_fid = float(fid_score.calculate_frechet_distance(ref.mean(0), np.cov(ref, rowvar=False),
                                                                  rec.mean(0), np.cov(rec, rowvar=False)))
        except ValueError as error:
            pair_fid = str(error)
    finally:
        shutil.rmtree(work)

    # FID on well-conditioned features (more samples than dimensions), with pytorch-fid's
    # calculate_frechet_distance; the tests rebuild these features from the same generator.
    n, d = 256, 64
    a = metric_weights.uniforms("fid-features-a", n * d).reshape(n, d).astype(np.float32)
    b = (metric_weights.uniforms("fid-features-b", n * d).reshape(n, d) ** 2 + 0.05).astype(np.float32)
    synthetic = float(fid_score.calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)))

    golden = {
        "generator": {"torch": torch.__version__, "torchmetrics": torchmetrics.__version__, "pillow": PIL.__version__,
                      "numpy": np.__version__, "script": "MiniMax-AI/VTP tools/test_reconstruction_hf.py test_reconstruction",
                      "batch_size": 1, "precision": "fp32 (cpu)"},
        "tree": TREE, "psnr": float(result["psnr"]), "ssim": float(result["ssim"]), "images": images,
        "lpips": float(result["lpips"]), "rfid_by_script": fid_values[0] if fid_values else None, "fid_of_features": pair_fid,
        "fid_synthetic": {"samples": n, "dimension": d, "fid": synthetic,
                          "a": "uniforms('fid-features-a') as float32", "b": "uniforms('fid-features-b')**2 + 0.05 as float32"},
    }
    fixtures = os.path.join(ROOT, "Tests", "Fixtures")
    save_file(features, os.path.join(fixtures, "reconstruction-eval-fid-features.safetensors"))
    with open(os.path.join(fixtures, "metric-weights-layout.json"), "w") as f:
        json.dump(layouts, f, indent=0, sort_keys=True)
        f.write("\n")
    target = os.path.join(ROOT, "Tests", "Fixtures", "reconstruction-eval.json")
    with open(target, "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {target}: psnr {golden['psnr']:.6f} ssim {golden['ssim']:.6f} over {len(images)} images")


if __name__ == "__main__":
    sys.exit(main())
