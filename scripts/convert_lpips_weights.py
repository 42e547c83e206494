#!/usr/bin/env python3
"""Writes the safetensors file `vtp run reconstruction --lpips-weights` reads: the state dict of
the LPIPS module of upstream's reconstruction evaluation (MiniMax-AI/VTP vtp/utils/lpips.py,
LightningDiT's and taming-transformers' VGG LPIPS).

Inputs: torchvision's ImageNet VGG16 weights (`vgg16-397923af.pth`, what
`torchvision.models.vgg16(weights="IMAGENET1K_V1")` downloads to ~/.cache/torch/hub/checkpoints/)
and LPIPS' linear layers `vgg.pth` (the file upstream's lpips.py downloads, md5
d507d7349b931f0638a25a48a722f98a). Output names: `net.slice1.0.weight` ... `net.slice5.28.bias`
(VGG16 `features` index i in the slice upstream puts it in) and `lin0.model.1.weight` ...
`lin4.model.1.weight`, float32.

    python3 scripts/convert_lpips_weights.py vgg16-397923af.pth vgg.pth lpips_vgg.safetensors

Needs torch and safetensors (pip install torch safetensors).
"""
import argparse

import torch
from safetensors.torch import save_file

# VGG16 `features` convolutions by LPIPS slice (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
SLICES = {1: [0, 2], 2: [5, 7], 3: [10, 12, 14], 4: [17, 19, 21], 5: [24, 26, 28]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vgg16", help="torchvision's vgg16-397923af.pth")
    parser.add_argument("lpips", help="LPIPS' vgg.pth (the lin layers)")
    parser.add_argument("output", help="the .safetensors file to write")
    args = parser.parse_args()
    vgg = torch.load(args.vgg16, map_location="cpu", weights_only=True)
    lin = torch.load(args.lpips, map_location="cpu", weights_only=True)
    tensors = {}
    for s, indices in SLICES.items():
        for i in indices:
            for part in ("weight", "bias"):
                source = f"features.{i}.{part}"
                if source not in vgg:
                    raise SystemExit(f"{args.vgg16}: no {source}; expected torchvision's VGG16 state dict")
                tensors[f"net.slice{s}.{i}.{part}"] = vgg[source].float().contiguous()
    for k in range(5):
        name = f"lin{k}.model.1.weight"
        if name not in lin:
            raise SystemExit(f"{args.lpips}: no {name}; expected LPIPS' vgg.pth")
        tensors[name] = lin[name].float().contiguous()
    save_file(tensors, args.output, metadata={"source": "torchvision vgg16 IMAGENET1K_V1 + LPIPS vgg.pth", "format": "vtp-lpips-vgg"})
    print(f"wrote {args.output}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
