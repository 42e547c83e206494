#!/usr/bin/env python3
"""End-to-end goldens for `vtp run linear-probe`: the official linear probing (MiniMax-AI/VTP
tools/test_linear_probing_hf.py: its eval transform, FeatureExtractor, setup_linear_classifiers,
train_one_epoch, evaluate, and the best-head selection of its main loop) on small ImageFolders of
the fixture photos with the tiny checkpoint, float32 on the CPU.

Two things differ from the script, both documented for `vtp run linear-probe`:
- the heads train on cached features of the eval transform (no RandomResizedCrop/flip views), so
  each batch's features are looked up instead of computed;
- the training order and the initial weights come from vtp's SplitMix64 draws
  (LinearProbeRandom), replayed here, instead of torch's generator.

Writes Tests/Fixtures/linear-probe-eval.safetensors (the features `get_intermediate_layers_feature`
returns, as a `features --layers 2 --pool cls+mean` job stores them: `{train,val}/intermediate_{i}_pooled`
(N, 2D) = [class token, mean patch token] of block i, i = 0 the earlier, and `{train,val}/labels`;
each trained head's final `{key}.weight` and `{key}.bias`) and Tests/Fixtures/linear-probe-eval.json
({"generator", "trees", "settings", "heads": [keys in sweep order], "epochs": [{key: accuracy}],
"best_accuracy", "best_classifier"}).

Regenerate (torch, torchvision, safetensors, transformers 4.57.6, Pillow; the official sources importable):
    PYTHONPATH=<checkout of MiniMax-AI/VTP> venv/bin/python scripts/reference/linear_probe_eval.py
"""
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np
import PIL
import torch
from safetensors.torch import save_file
from torchvision.datasets import ImageFolder
from upstream_tools import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "fixtures")
TREES = {
    "train": {
        "a": ["chelsea.jpg", "chelsea_gray.jpg", "coffee.jpg", "coffee_cmyk.jpg"],
        "b": ["astronaut.png", "astronaut_rgba.png", "rocket.jpg"],
        "c": ["dog.png", "camera_gray.png", "hubble_large.jpg"],
    },
    "val": {
        "a": ["chelsea_tiny.jpg", "coffee_palette.png"],
        "b": ["rocket_progressive.jpg", "astronaut.png"],
        "c": ["dog.png", "hubble_large.jpg"],
    },
}
# The tiny encoder has 2 blocks. Batch 4 scales the rates by 4/256; 64 and 64.0001 print alike
# (1.00000) and so share a key, and 1 prints as the exact tie 0.015625 -> 0.01562.
SETTINGS = {"blocks": [1, 2], "learning_rates": [0.5, 1.0, 4.0, 16.0, 64.0, 64.0001], "batch_size": 4,
            "epochs": 3, "epoch_length": 4, "seed": 7}
MASK = (1 << 64) - 1


class SplitMix64:
    """vtp's SplitMix64 (Sources/VTPRandom)."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def unit(self):
        return (self.next() >> 11) / float(1 << 53)

    def normal(self):
        u1 = max(self.unit(), 1e-300)
        u2 = self.unit()
        return np.float32(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2))


def initial_weights(seed, head, classes, input_dim):
    generator = SplitMix64(seed ^ 0x5EED000000000000 ^ head)
    values = np.array([generator.normal() for _ in range(classes * input_dim)], dtype=np.float32) * np.float32(0.01)
    return torch.from_numpy(values.reshape(classes, input_dim))


def training_order(seed, epoch, rows, count):
    order, sweep = [], 0
    while len(order) < count:
        generator = SplitMix64(seed ^ (epoch << 32) ^ sweep)
        permutation = list(range(rows))
        for i in range(rows - 1, 0, -1):
            j = generator.next() % (i + 1)
            permutation[i], permutation[j] = permutation[j], permutation[i]
        order += permutation[:count - len(order)]
        sweep += 1
    return order


class Quiet(list):
    """tqdm without the bar: the script calls set_postfix on it."""

    def __init__(self, iterable, **_):
        super().__init__(iterable)

    def set_postfix(self, **_):
        pass


class CachedFeatures(torch.nn.Module):
    """FeatureExtractor's output for rows of a cached set: per block (patch tokens, class token),
    with the mean patch token standing for the tokens (their mean is what create_linear_input takes)."""

    def __init__(self, blocks):
        super().__init__()
        self.blocks = blocks  # [(cls (N, D), mean (N, D))]

    def forward(self, rows):
        return [(mean[rows].unsqueeze(1), cls[rows]) for cls, mean in self.blocks]


def main():
    upstream = load_tool("test_linear_probing_hf")
    upstream.tqdm = Quiet
    device = torch.device("cpu")
    model = upstream.VTPModel.from_pretrained(os.path.join(SHARED, "vtp-tiny")).to(device).eval()
    depth = len(model.trunk.blocks)
    extractor = upstream.FeatureExtractor(model, depth, torch.float32)
    work = tempfile.mkdtemp(prefix="vtp-linear-probe-golden-")
    tensors, features, labels = {}, {}, {}
    try:
        for split, tree in TREES.items():
            root = os.path.join(work, split)
            for cls, names in tree.items():
                os.makedirs(os.path.join(root, cls))
                for name in names:
                    shutil.copy(os.path.join(SHARED, "images", name), os.path.join(root, cls, name))
            dataset = ImageFolder(root=root, transform=upstream.make_eval_transform())
            images = torch.stack([dataset[i][0] for i in range(len(dataset))])
            labels[split] = torch.tensor([dataset[i][1] for i in range(len(dataset))], dtype=torch.int64)
            blocks = []
            for i, (patch, cls) in enumerate(extractor(images)):
                mean = patch.mean(dim=1)
                blocks.append((cls.float().contiguous(), mean.float().contiguous()))
                tensors[f"{split}/intermediate_{i}_pooled"] = torch.cat([cls, mean], dim=1).float().contiguous()
            tensors[f"{split}/labels"] = labels[split]
            features[split] = CachedFeatures(blocks)
    finally:
        shutil.rmtree(work)

    s = SETTINGS
    classes = len(TREES["train"])
    sample = features["train"](torch.tensor([0]))
    classifiers, groups = upstream.setup_linear_classifiers(sample, tuple(s["blocks"]), tuple(s["learning_rates"]), s["batch_size"],
                                                            classes, device)
    keys = list(classifiers.classifiers_dict.keys())
    # Our initial weights, head by head in sweep (dict) order.
    with torch.no_grad():
        for h, key in enumerate(keys):
            linear = classifiers.classifiers_dict[key].linear
            linear.weight.copy_(initial_weights(s["seed"], h, classes, linear.in_features))
            linear.bias.zero_()
    max_iter = s["epochs"] * s["epoch_length"]
    optimizer = torch.optim.SGD(groups, momentum=0.9, weight_decay=0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max_iter, eta_min=0)
    criterion = torch.nn.CrossEntropyLoss()
    train_rows, val_rows = len(labels["train"]), len(labels["val"])
    val_batch = 2 * s["batch_size"]
    val_loader = [(torch.arange(i, min(i + val_batch, val_rows)), labels["val"][i:i + val_batch]) for i in range(0, val_rows, val_batch)]
    best_accuracy, best_classifier, epochs = 0.0, "", []
    for epoch in range(s["epochs"]):
        order = training_order(s["seed"], epoch, train_rows, s["epoch_length"] * s["batch_size"])
        loader = []
        for i in range(s["epoch_length"]):
            rows = torch.tensor(order[i * s["batch_size"]:(i + 1) * s["batch_size"]])
            loader.append((rows, labels["train"][rows]))
        upstream.train_one_epoch(features["train"], classifiers, optimizer, scheduler, criterion, loader, epoch, s["epoch_length"], device)
        accuracies = upstream.evaluate(features["val"], classifiers, val_loader, device)
        # The script's selection, as its main loop has it.
        current_best_acc = max(accuracies.values())
        current_best_key = max(accuracies, key=accuracies.get)
        if current_best_acc > best_accuracy:
            best_accuracy, best_classifier = current_best_acc, current_best_key
        epochs.append(accuracies)
    for key in keys:
        linear = classifiers.classifiers_dict[key].linear
        tensors[f"{key}.weight"] = linear.weight.detach().contiguous()
        tensors[f"{key}.bias"] = linear.bias.detach().contiguous()
    fixtures = os.path.join(ROOT, "Tests", "Fixtures")
    save_file(tensors, os.path.join(fixtures, "linear-probe-eval.safetensors"))
    golden = {
        "generator": {"torch": torch.__version__, "pillow": PIL.__version__,
                      "script": "MiniMax-AI/VTP tools/test_linear_probing_hf.py (make_eval_transform, FeatureExtractor, "
                                "setup_linear_classifiers, train_one_epoch, evaluate, the main loop's selection)",
                      "precision": "fp32 (cpu)"},
        "trees": TREES, "settings": s, "classes": classes, "heads": keys, "epochs": epochs,
        "best_accuracy": best_accuracy, "best_classifier": best_classifier,
    }
    with open(os.path.join(fixtures, "linear-probe-eval.json"), "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote linear-probe goldens: {len(keys)} heads, best {best_accuracy:.3f} ({best_classifier})")
    for e, accuracies in enumerate(epochs):
        print(e, accuracies)


if __name__ == "__main__":
    sys.exit(main())
