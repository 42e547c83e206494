"""Regenerates the PNG/WebP variant files and their Pillow decodings.

Run from the repository root with Pillow, numpy and safetensors installed:
    python3 Tests/VTPImageTests/Resources/generate.py
The PNGs are written by the small encoder below (Pillow cannot write 16-bit colour,
low bit depths with tRNS or Adam7), the WebPs by Pillow; `expected.safetensors` holds
`numpy.asarray(Image.open(f).convert("RGB"))` for each file, the reference the tests
compare against.
"""
import os
import struct
import zlib

import numpy as np
from PIL import Image
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
W, H = 37, 23
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_row(samples, bit_depth):
    """samples: 1-D int array of one (sub)image row, all channels interleaved."""
    if bit_depth == 16:
        return samples.astype(">u2").tobytes()
    if bit_depth == 8:
        return samples.astype(np.uint8).tobytes()
    per_byte = 8 // bit_depth
    out = bytearray()
    for i in range(0, len(samples), per_byte):
        byte = 0
        for j in range(per_byte):
            value = int(samples[i + j]) if i + j < len(samples) else 0
            byte |= value << (8 - bit_depth * (j + 1))
        out.append(byte)
    return bytes(out)


def write_png(name, pixels, color_type, bit_depth, interlaced=False, palette=None, trns=None):
    """pixels: (H, W, C) int array of raw samples."""
    h, w = pixels.shape[:2]
    flat = pixels.reshape(h, w, -1)
    raw = bytearray()
    passes = ADAM7 if interlaced else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = flat[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + pack_row(row.reshape(-1), bit_depth)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlaced else 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    png += chunk(b"IEND", b"")
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(png)


def resize_horizontal_first(image, size, resample):
    """Pillow <= 12 pass order, emulated with two single-axis resizes (each is order-free)."""
    if size[0] == image.size[0] or size[1] == image.size[1]:
        return image.resize(size, resample)
    return image.resize((size[0], image.size[1]), resample).resize(size, resample)


def center_crop_arr(image, size, resize):
    while min(*image.size) >= 2 * size:
        image = resize(image, tuple(x // 2 for x in image.size), Image.BOX)
    scale = size / min(*image.size)
    image = resize(image, tuple(round(x * scale) for x in image.size), Image.BICUBIC)
    arr = np.array(image)
    y, x = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[y:y + size, x:x + size])


def write_transform_goldens(photo):
    """Portrait crops, where Pillow 13 (vertical pass first) and Pillow <= 12 differ."""
    assert Image.__version__.startswith("13."), "pillow13 goldens need Pillow 13"
    goldens = {}
    for name, array in [("portrait.png", photo[:, 100:280]), ("tall.png", photo[:, 200:240])]:
        Image.fromarray(np.ascontiguousarray(array)).save(os.path.join(HERE, "transforms", name))
        image = Image.open(os.path.join(HERE, "transforms", name)).convert("RGB")
        for size in (64, 128):
            goldens[f"pillow13/adm{size}/{name}"] = center_crop_arr(image, size, Image.Image.resize)
            goldens[f"pillow12/adm{size}/{name}"] = center_crop_arr(image, size, resize_horizontal_first)
            goldens[f"pillow13/resize{size}/{name}"] = np.asarray(image.resize((size, size), Image.BILINEAR))
            goldens[f"pillow12/resize{size}/{name}"] = np.asarray(
                resize_horizontal_first(image, (size, size), Image.BILINEAR))
    save_file(goldens, os.path.join(HERE, "transforms", "expected.safetensors"))


def main():
    photo = np.asarray(Image.open(os.path.join(ROOT, "Tests/Fixtures/images/chelsea.jpg")).convert("RGB"))
    rgb = photo[100:100 + H, 150:150 + W].astype(np.int64)
    gray = rgb.mean(axis=2).astype(np.int64)
    alpha = (np.arange(W)[None, :] * 7 + np.arange(H)[:, None] * 11) % 256
    wide = rgb * 257 + (np.arange(W)[None, :, None] * 13) % 257  # low bytes vary too

    write_png("gray1.png", (gray > 100)[..., None], 0, 1)
    write_png("gray2_interlaced.png", (gray >> 6)[..., None], 0, 2, interlaced=True)
    write_png("gray4.png", (gray >> 4)[..., None], 0, 4)
    write_png("gray4_trns_interlaced.png", (gray >> 4)[..., None], 0, 4, interlaced=True, trns=struct.pack(">H", 5))
    write_png("gray8_trns.png", gray[..., None], 0, 8, trns=struct.pack(">H", int(gray[0, 0])))
    # Spans values below and above 255: PIL's I;16 -> RGB saturates the latter.
    write_png("gray16.png", (gray * 2)[..., None], 0, 16)
    write_png("gray16_interlaced.png", (gray * 257)[..., None], 0, 16, interlaced=True)
    write_png("graya8.png", np.stack([gray, alpha], -1), 4, 8)
    write_png("graya16.png", np.stack([gray * 257 + 100, alpha * 257], -1), 4, 16)
    write_png("rgb8_interlaced.png", rgb, 2, 8, interlaced=True)
    write_png("rgb8_trns.png", rgb, 2, 8, trns=struct.pack(">HHH", *[int(v) for v in rgb[0, 0]]))
    write_png("rgb16.png", wide, 2, 16)
    write_png("rgb16_interlaced.png", wide, 2, 16, interlaced=True)
    write_png("rgba16.png", np.concatenate([wide, (alpha * 257)[..., None]], -1), 6, 16)
    write_png("rgba8_interlaced.png", np.concatenate([rgb, alpha[..., None]], -1), 6, 8, interlaced=True)
    quantised = Image.fromarray(rgb.astype(np.uint8)).quantize(16)
    indices = np.asarray(quantised).astype(np.int64)
    palette = np.asarray(quantised.getpalette()[:48]).reshape(16, 3)
    write_png("palette4_trns.png", indices[..., None], 3, 4, palette=palette, trns=bytes(range(0, 160, 10)))
    write_png("palette2_interlaced.png", (indices % 4)[..., None], 3, 2, interlaced=True, palette=palette[:4])
    write_png("palette1.png", (indices % 2)[..., None], 3, 1, palette=palette[:2], trns=b"\x00")
    # PLTE shorter than the indices used: entries past its end.
    write_png("palette8_short.png", indices[..., None], 3, 8, palette=palette[:10])

    image = Image.fromarray(rgb.astype(np.uint8))
    image.save(os.path.join(HERE, "lossy.webp"), quality=80)
    rgba = Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1).astype(np.uint8), "RGBA")
    rgba.save(os.path.join(HERE, "lossy_alpha.webp"), quality=80)
    rgba.save(os.path.join(HERE, "lossless_alpha.webp"), lossless=True, exact=True)

    write_transform_goldens(photo)

    expected = {}
    for name in sorted(os.listdir(HERE)):
        if name.endswith((".png", ".webp")):
            expected[name] = np.ascontiguousarray(np.asarray(Image.open(os.path.join(HERE, name)).convert("RGB")))
    save_file(expected, os.path.join(HERE, "expected.safetensors"))
    for name, array in expected.items():
        print(name, array.shape, Image.open(os.path.join(HERE, name)).mode)


if __name__ == "__main__":
    main()
