#!/usr/bin/env python3
"""End-to-end goldens for `vtp run zero-shot`: the official zero-shot evaluation (MiniMax-AI/VTP
tools/test_zero_shot_hf.py: its ImageNet class names, OpenAI templates, tokenizer, dataloader,
`build_zero_shot_classifier`, `evaluate` and `accuracy`) on a small ImageFolder of the fixture
photos with the tiny checkpoint, float32 on the CPU.

Writes Tests/Fixtures/zero-shot-eval.json:
    {"generator": {...}, "tree": {class: [fixture photo, ...]}, "top1": percent, "top5": percent,
     "images": [{"path": "class/name", "label": i, "top_classes": [5 indices], "top_logits": [5],
                 "sixth_logit": ...}, ...]}
Images are in ImageFolder order, so label i is the i-th class folder in sorted order, read (as
the script reads ImageNet's val folders) as ImageNet class index i. Per image it also records
the script's own logits `100 * image_features @ classifier` for its five best classes and the
sixth, so a reader can tell an exact tie from a different ranking.

Regenerate (torch, torchvision, safetensors, transformers 4.57.6, ftfy, regex, Pillow; the
official sources importable):
    PYTHONPATH=<checkout of MiniMax-AI/VTP> venv/bin/python scripts/reference/zero_shot_eval.py
"""
import json
import os
import shutil
import sys
import tempfile

import PIL
import torch
from upstream_tools import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "fixtures")
# Folders named after ImageNet classes 0..2 so the labels mean what the script assumes.
TREE = {
    "n01440764": ["chelsea.jpg", "chelsea_gray.jpg", "coffee.jpg"],
    "n01443537": ["astronaut.png", "rocket.jpg"],
    "n01484850": ["dog.png", "camera_gray.png", "coffee_palette.png"],
}


def main():
    upstream = load_tool("test_zero_shot_hf")
    # The script's `accuracy` calls float() on a one-element 1-d array, which NumPy 2 refuses; the
    # same count through .item().
    def accuracy(output, target, topk=(1,)):
        pred = output.topk(max(topk), 1, True, True)[1].t()
        correct = pred.eq(target.view(1, -1).expand_as(pred))
        return [float(correct[:k].reshape(-1).float().sum().item()) for k in topk]
    upstream.accuracy = accuracy
    device = torch.device("cpu")
    model = upstream.VTPModel.from_pretrained(os.path.join(SHARED, "vtp-tiny")).to(device).eval()
    tokenizer = upstream.get_tokenizer("ViT-B-32", context_length=model.config.text_context_length)
    work = tempfile.mkdtemp(prefix="vtp-zero-shot-golden-")
    try:
        data = os.path.join(work, "data")
        for cls, names in TREE.items():
            os.makedirs(os.path.join(data, cls))
            for name in names:
                shutil.copy(os.path.join(SHARED, "images", name), os.path.join(data, cls, name))
        loader = upstream.create_imagenet_dataloader(data, image_size=model.config.image_size, batch_size=4, num_workers=0)
        classifier = upstream.build_zero_shot_classifier(model, tokenizer, classnames=upstream.IMAGENET_CLASSNAMES,
                                                         templates=upstream.OPENAI_IMAGENET_TEMPLATES, num_classes_per_batch=10,
                                                         device=device, use_tqdm=False)
        top1, top5 = upstream.evaluate(model, classifier, loader, device=device, precision="fp32")
        images = []
        paths = [f"{cls}/{name}" for cls in sorted(TREE) for name in sorted(TREE[cls])]
        with torch.inference_mode():
            for batch, targets in loader:
                logits = 100.0 * model.get_clip_image_feature(batch, normalize=True) @ classifier
                values, indices = logits.topk(6, 1, True, True)
                for v, i, t in zip(values.tolist(), indices.tolist(), targets.tolist()):
                    images.append({"path": paths[len(images)], "label": t, "top_classes": i[:5], "top_logits": v[:5],
                                   "sixth_logit": v[5]})
    finally:
        shutil.rmtree(work)
    golden = {
        "generator": {"torch": torch.__version__, "pillow": PIL.__version__,
                      "script": "MiniMax-AI/VTP tools/test_zero_shot_hf.py (build_zero_shot_classifier, evaluate)",
                      "precision": "fp32 (cpu)", "classes": "IMAGENET_CLASSNAMES", "templates": "OPENAI_IMAGENET_TEMPLATES"},
        "tree": TREE, "top1": float(top1), "top5": float(top5), "images": images,
    }
    target = os.path.join(ROOT, "Tests", "Fixtures", "zero-shot-eval.json")
    with open(target, "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {target}: top1 {top1:.3f} top5 {top5:.3f} over {len(images)} images")


if __name__ == "__main__":
    sys.exit(main())
