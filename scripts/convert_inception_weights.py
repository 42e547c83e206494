#!/usr/bin/env python3
"""Converts pytorch-fid's FID Inception weights to the safetensors file `vtp run reconstruction
--inception-weights` reads.

Input: `pt_inception-2015-12-05-6726825d.pth`, the state dict pytorch-fid downloads
(https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth;
pytorch-fid caches it under ~/.cache/torch/hub/checkpoints/). Output: the same tensors, same
names (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_var`, ...), as float32
safetensors; the batch-norm step counters are dropped, the `fc` layer is kept but unused.

    python3 scripts/convert_inception_weights.py pt_inception-2015-12-05-6726825d.pth fid_inception.safetensors

Needs torch and safetensors (pip install torch safetensors).
"""
import argparse

import torch
from safetensors.torch import save_file

REQUIRED = ["Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch_pool.bn.running_var", "Mixed_6a.branch3x3.conv.weight",
            "Mixed_7c.branch3x3dbl_3b.bn.weight"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pth", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
    parser.add_argument("output", help="the .safetensors file to write")
    args = parser.parse_args()
    state = torch.load(args.pth, map_location="cpu", weights_only=True)
    missing = [name for name in REQUIRED if name not in state]
    if missing:
        raise SystemExit(f"{args.pth}: not pytorch-fid's FID Inception state dict (no {', '.join(missing)})")
    tensors = {name: t.float().contiguous() for name, t in state.items() if not name.endswith("num_batches_tracked")}
    save_file(tensors, args.output, metadata={"source": "pytorch-fid pt_inception-2015-12-05", "format": "vtp-fid-inception"})
    print(f"wrote {args.output}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
