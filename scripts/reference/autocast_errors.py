#!/usr/bin/env python3
"""Autocast-bf16 error goldens: how far the official VTP reference drifts from its own fp32 outputs
when run under `torch.autocast("cpu", dtype=torch.bfloat16)`, for every conformance checkpoint.

Writes Tests/Fixtures/autocast-bf16-errors.json:
    {"generator": {"torch": ..., "transformers": ..., "command": ...},
     "checkpoints": {NAME: {EXPECTED_KEY: {"mean_rel": ..., "max_rel": ...}, ...}, ...}}
with mean_rel = mean|ours - ref| / mean|ref| and max_rel = max|ours - ref| / max|ref|, where ref is
the fp32 tensor stored in Tests/Fixtures/<NAME>.expected.safetensors and "ours" is the reference
model's output under autocast, cast to float32. The protocol is that of
Tests/VTPModelTests/ConformanceTests.swift: inputs are the `pixel_values` and `text_tokens` stored in
the expected file, the decoder is fed the expected file's `reconstruction_latents`, intermediate
layers use n = number of `intermediate_*_cls_token` keys (norm=True, and norm=False for the
`_prenorm` keys), and `logit_scale_exp` is skipped.

Regenerate (Python env with torch, transformers==4.57.6 (5.x changes text features), safetensors,
numpy, omegaconf, torchvision; the official sources of MiniMax-AI/VTP importable):
    python3 -m venv venv && venv/bin/pip install torch torchvision transformers==4.57.6 safetensors numpy omegaconf
    cd <this repository> && PYTHONPATH=<checkout of MiniMax-AI/VTP> venv/bin/python scripts/reference/autocast_errors.py
`--fp32` runs the same protocol without autocast and only prints the errors (they should be ~1e-6,
which shows the inputs and calls match the ones that produced the expected files); it writes nothing.
"""
import argparse
import contextlib
import json
import os
import sys

import torch
import transformers
from safetensors import safe_open

from vtp.models.vtp_hf import VTPModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
CHECKPOINTS = ["vtp-tiny", "vtp-tiny-fp16", "vtp-tiny-bf16", "vtp-tiny-ae-only",
               "variants/options-a", "variants/options-b", "variants/options-c"]


def rel_errors(ours, ref):
    ours = ours.detach().to(torch.float64)
    ref = ref.to(torch.float64)
    if ours.shape != ref.shape:
        raise ValueError(f"shape {tuple(ours.shape)} vs expected {tuple(ref.shape)}")
    d = (ours - ref).abs()
    return {"mean_rel": float(d.mean() / ref.abs().mean()), "max_rel": float(d.max() / ref.abs().max())}


def outputs(model, exp, names):
    """The outputs the conformance test checks, keyed by expected-file name, computed from exp's inputs."""
    pixels = exp["pixel_values"]
    out = {"reconstruction_latents": model.get_reconstruction_latents(pixels),
           "decoded_images": model.get_latents_decoded_images(exp["reconstruction_latents"])}
    last = model.get_last_layer_feature(pixels)
    out["last_cls_token"], out["last_patch_tokens"] = last["cls_token"], last["patch_tokens"]
    depth = sum(1 for k in names if k.startswith("intermediate_") and k.endswith("_cls_token"))
    if depth:
        normed = model.get_intermediate_layers_feature(pixels, n=depth, return_class_token=True, norm=True)
        raw = model.get_intermediate_layers_feature(pixels, n=depth, return_class_token=True, norm=False)
        for i in range(depth):
            out[f"intermediate_{i}_patch_tokens"], out[f"intermediate_{i}_cls_token"] = normed[i]
            out[f"intermediate_{i}_patch_tokens_prenorm"] = raw[i][0]
    if model.config.train_clip:
        tokens = exp["text_tokens"]
        out["clip_image_features"] = model.get_clip_image_feature(pixels)
        out["clip_image_features_unnormalized"] = model.get_clip_image_feature(pixels, normalize=False)
        out["clip_text_features"] = model.get_clip_text_feature(tokens)
        out["clip_text_features_unnormalized"] = model.get_clip_text_feature(tokens, normalize=False)
        out["clip_logits_per_image"] = model.get_clip_logits(pixels, tokens)[0]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fp32", action="store_true", help="no autocast; print the errors, write nothing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(FIXTURES, "autocast-bf16-errors.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    report = {}
    for name in CHECKPOINTS:
        path = os.path.join(FIXTURES, name + ".expected.safetensors")
        with safe_open(path, "pt") as f:
            names = list(f.keys())
            exp = {k: f.get_tensor(k) for k in names}
        model = VTPModel.from_pretrained(os.path.join(FIXTURES, name)).eval()
        ctx = contextlib.nullcontext() if args.fp32 else torch.autocast("cpu", dtype=torch.bfloat16)
        with torch.no_grad(), ctx:
            out = outputs(model, exp, names)
        expected_outputs = [k for k in names if k not in ("pixel_values", "text_tokens", "logit_scale_exp")]
        missing = sorted(set(expected_outputs) - set(out))
        if missing:
            sys.exit(f"{name}: no output computed for {missing}")
        report[name] = {k: rel_errors(out[k].float(), exp[k]) for k in sorted(expected_outputs)}
        worst_mean = max(report[name].items(), key=lambda kv: kv[1]["mean_rel"])
        worst_max = max(report[name].items(), key=lambda kv: kv[1]["max_rel"])
        print(f"{name}: worst mean_rel {worst_mean[1]['mean_rel']:.3e} ({worst_mean[0]}), "
              f"worst max_rel {worst_max[1]['max_rel']:.3e} ({worst_max[0]})", flush=True)

    if args.fp32:
        return
    doc = {"generator": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "command": "PYTHONPATH=<checkout of MiniMax-AI/VTP> python scripts/reference/autocast_errors.py"},
           "checkpoints": report}
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", os.path.relpath(args.out, ROOT))


if __name__ == "__main__":
    main()
