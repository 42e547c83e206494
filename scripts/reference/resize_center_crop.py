#!/usr/bin/env python3
"""Goldens for the `resize-center-crop` transform: upstream linear probing's evaluation transform
(MiniMax-AI/VTP tools/test_linear_probing_hf.py `make_eval_transform`: torchvision
Resize(256, BICUBIC) then CenterCrop(224)) on fixture photos, as uint8 HWC arrays.

Writes Tests/Fixtures/resize-center-crop.expected.safetensors with one U8 tensor per image,
`resize_center_crop224/NAME`, and the Pillow release in its metadata (the pass order of its
resampling, see PillowOption).

Regenerate (torch, torchvision, safetensors, Pillow; the official sources importable):
    PYTHONPATH=<checkout of MiniMax-AI/VTP> venv/bin/python scripts/reference/resize_center_crop.py
"""
import os
import sys

import numpy as np
import PIL
from PIL import Image
from safetensors.numpy import save_file
from torchvision import transforms
from upstream_tools import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "Tests", "Fixtures", "images")
# Square, landscape, portrait-free RGBA, grayscale, an upscale and a large shrink.
NAMES = ["astronaut.png", "astronaut_rgba.png", "camera_gray.png", "chelsea.jpg", "chelsea_tiny.jpg", "hubble_large.jpg", "rocket.jpg"]


def main():
    upstream = load_tool("test_linear_probing_hf")
    # The script's transform up to ToTensor: the geometry and resampling, on the 8-bit image.
    geometric = transforms.Compose(upstream.make_eval_transform().transforms[:2])
    tensors = {}
    for name in NAMES:
        image = Image.open(os.path.join(IMAGES, name)).convert("RGB")
        tensors[f"resize_center_crop224/{name}"] = np.ascontiguousarray(np.asarray(geometric(image), dtype=np.uint8))
    target = os.path.join(ROOT, "Tests", "Fixtures", "resize-center-crop.expected.safetensors")
    save_file(tensors, target, metadata={"pillow": PIL.__version__, "transform": repr(geometric)})
    print(f"wrote {target}: {len(tensors)} images, Pillow {PIL.__version__}")


if __name__ == "__main__":
    sys.exit(main())
