#!/usr/bin/env python3
"""How far cached features move upstream's linear-probing number: runs the official script
(MiniMax-AI/VTP tools/test_linear_probing_hf.py, `test_linear_probing`) twice on the same model,
data and seed, once as published (RandomResizedCrop(224) + flip on the train set) and once with
the train set through the eval transform (Resize(256) + CenterCrop(224)), which is what heads
trained on `vtp run features` outputs see. Prints both best accuracies and their difference.

It needs what these machines lack (a released VTP checkpoint and ImageNet, and a GPU for a run in
hours rather than days), so its result is not recorded in the repository; docs say so.

    PYTHONPATH=<checkout of MiniMax-AI/VTP> python scripts/reference/linear_probe_augmentation_gap.py \\
        --model_path pretrained/vtp-l-hf --imagenet_root /data/imagenet [--device cuda:0] [--epochs 10]
"""
import argparse
import os
import sys

import torch
from upstream_tools import load_tool


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--imagenet_root", required=True)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch_length", type=int, default=1250)
    parser.add_argument("--output_dir", default="./linear_probe_gap")
    args = parser.parse_args()
    upstream = load_tool("test_linear_probing_hf")
    published = upstream.make_train_transform
    results = {}
    for name, transform in [("augmented (published)", published), ("eval transform (cached features)", lambda: upstream.make_eval_transform())]:
        upstream.make_train_transform = transform
        torch.manual_seed(0)
        out = upstream.test_linear_probing(model_path=args.model_path, imagenet_root=args.imagenet_root,
                                           output_dir=os.path.join(args.output_dir, name.split()[0]), epochs=args.epochs,
                                           epoch_length=args.epoch_length, device=args.device)
        results[name] = out["accuracy"]
    for name, accuracy in results.items():
        print(f"{name}: {accuracy:.2f}%")
    values = list(results.values())
    print(f"difference (cached - published): {values[1] - values[0]:+.2f} points")


if __name__ == "__main__":
    sys.exit(main())
