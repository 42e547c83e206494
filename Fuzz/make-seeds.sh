#!/usr/bin/env bash
# Regenerates the committed seed corpora under Fuzz/Corpus from the repository's test fixtures and
# real tools (GNU tar, libjpeg-turbo's cjpeg/jpegtran, libwebp's cwebp/webpmux). Run by hand when
# a format grows a feature worth seeding; the results are committed, so neither CI nor scripts/fuzz.sh
# needs these tools. The wire seeds are the real encoder's frames and come from a unit test instead:
#   VTP_WRITE_FUZZ_SEEDS=1 swift test --filter WireFuzzSeedTests
# Files named crash-* or regression-* in a corpus are inputs that once crashed a harness; this script
# leaves them alone.
#
# Needs: apt-get install libjpeg-turbo-progs webp (and python3).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=Fuzz/Corpus
fixtures=Tests/VTPImageTests/Resources
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

clean() { find "$corpus/$1" -maxdepth 1 -type f ! -name 'crash-*' ! -name 'regression-*' -delete 2>/dev/null || true; mkdir -p "$corpus/$1"; }

# MARK: images: every decoder path the product has (baseline/progressive/arithmetic/gray/CMYK JPEG,
# each PNG colour type and depth with and without interlace and tRNS, lossy/lossless/alpha/animated WebP).
clean image
cp Tests/Fixtures/images/chelsea_tiny.jpg "$corpus/image/jpeg-baseline-420.jpg"
djpeg Tests/Fixtures/images/chelsea_tiny.jpg >"$tmp/chelsea.ppm"
jpegtran -progressive Tests/Fixtures/images/chelsea_tiny.jpg >"$corpus/image/jpeg-progressive.jpg"
jpegtran -grayscale Tests/Fixtures/images/chelsea_tiny.jpg >"$corpus/image/jpeg-gray.jpg"
jpegtran -arithmetic Tests/Fixtures/images/chelsea_tiny.jpg >"$corpus/image/jpeg-arithmetic.jpg"
cjpeg -quality 60 -sample 1x1 -restart 1 -optimize "$tmp/chelsea.ppm" >"$corpus/image/jpeg-444-restart.jpg"
jpegtran -crop 24x16+0+0 Tests/Fixtures/images/coffee_cmyk.jpg >"$corpus/image/jpeg-cmyk.jpg"
python3 - "$tmp/thin.ppm" <<'EOF'
import sys
w, h = 1, 37
with open(sys.argv[1], "wb") as f:
    f.write(b"P6\n%d %d\n255\n" % (w, h) + bytes((i * 7) % 256 for i in range(w * h * 3)))
EOF
cjpeg -quality 80 "$tmp/thin.ppm" >"$corpus/image/jpeg-1x37.jpg"
for png in gray1 gray2_interlaced gray4_trns_interlaced gray8_trns gray16 graya8 palette1 palette2_interlaced \
           palette4_trns palette8_short rgb8_trns rgb8_interlaced; do
    cp "$fixtures/$png.png" "$corpus/image/png-$png.png"
done
cp "$fixtures/lossy.webp" "$corpus/image/webp-lossy.webp"
cp "$fixtures/lossy_alpha.webp" "$corpus/image/webp-lossy-alpha.webp"
cp "$fixtures/lossless_alpha.webp" "$corpus/image/webp-lossless-alpha.webp"
cwebp -quiet -lossless -q 0 "$fixtures/palette1.png" -o "$tmp/a.webp"
cwebp -quiet -q 10 "$fixtures/gray1.png" -o "$tmp/b.webp"
webpmux -frame "$tmp/a.webp" +50 -frame "$tmp/b.webp" +50 -loop 0 -o "$corpus/image/webp-animated.webp" 2>/dev/null

# MARK: tar: WebDataset shards in each header flavour GNU tar writes (ustar with a prefix, GNU 'L'
# long names, pax 'x' records, v7), with image/.cls/.txt/.json members, a directory and a symlink.
clean tar
mkdir -p "$tmp/wds/sub"
printf '\xff\xd8\xff\xe0' >"$tmp/wds/000000.jpg"
printf '3\n' >"$tmp/wds/000000.cls"
printf 'a cat on a mat' >"$tmp/wds/000000.txt"
printf '{"url":"https://example.org/0.jpg","width":97,"caption":"from json"}' >"$tmp/wds/000000.json"
cp "$fixtures/gray1.png" "$tmp/wds/000001.png"
printf '{"key":"000001","nested":{"a":[1,2.5,null,true]}}' >"$tmp/wds/000001.json"
printf 'RIFF' >"$tmp/wds/000002.webp"
printf 'caf\xc3\xa9 cr\xc3\xa8me' >"$tmp/wds/000002.txt"
long=$(printf 'long-directory-name-%.0s' 1 2 3 4 5 6)
mkdir -p "$tmp/wds/$long"
printf '\xff\xd8\xff' >"$tmp/wds/$long/000003.jpg"
printf '7' >"$tmp/wds/$long/000003.cls"
printf 'x' >"$tmp/wds/sub/__meta__.jpg"
ln -sf 000000.jpg "$tmp/wds/link.jpg"
members=(000000.jpg 000000.cls 000000.txt 000000.json 000001.png 000001.json 000002.webp 000002.txt
         "$long/000003.jpg" "$long/000003.cls" sub sub/__meta__.jpg link.jpg)
for format in ustar gnu pax; do
    # atime/ctime records would make the pax seed differ on every run.
    pax=(); [[ $format == pax ]] && pax=(--pax-option=delete=atime,delete=ctime)
    tar --format=$format "${pax[@]}" -b 1 --owner=0 --group=0 --mtime=@0 --no-recursion -C "$tmp/wds" \
        -cf "$corpus/tar/webdataset-$format.tar" "${members[@]}"
done
tar --format=v7 -b 1 --owner=0 --group=0 --mtime=@0 --no-recursion -C "$tmp/wds" \
    -cf "$corpus/tar/webdataset-v7.tar" 000000.jpg 000000.cls 000000.txt 000001.png
# pax with a size override and a long UTF-8 path, as Python's tarfile writes them.
python3 - "$corpus/tar/pax-overrides.tar" <<'EOF'
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for name, data in [("d\u00e9j\u00e0-vu/" + "x" * 120 + ".jpg", b"\xff\xd8\xff\xdb"), ("d\u00e9j\u00e0-vu/" + "x" * 120 + ".txt", b"caption")]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.pax_headers = {"comment": "seed"}
        t.addfile(info, io.BytesIO(data))
EOF

# MARK: safetensors: the dtypes the loaders read, a scalar, an empty tensor and metadata, laid out
# as the reference library does (header padded with spaces to 8 bytes, tensors in offset order).
clean safetensors
python3 - "$corpus/safetensors" <<'EOF'
import json, struct, sys
def write(path, tensors, metadata=None):
    header, blob = {}, b""
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob)
out = sys.argv[1]
write(out + "/mixed-dtypes.safetensors", [
    ("w.f32", "F32", [2, 3], struct.pack("<6f", 0.5, -1.0, 2.0, 1e-3, 3.25, -0.0)),
    ("w.f16", "F16", [4], struct.pack("<4H", 0x3C00, 0xC000, 0x7BFF, 0x0001)),
    ("w.bf16", "BF16", [2, 1], struct.pack("<2H", 0x3F80, 0xBF00)),
    ("w.f64", "F64", [1], struct.pack("<d", 1.5)),
    ("ids.i64", "I64", [2], struct.pack("<2q", -1, 1 << 40)),
    ("ids.i32", "I32", [1], struct.pack("<i", -7)),
    ("ids.u16", "U16", [1], struct.pack("<H", 65535)),
    ("ids.u64", "U64", [1], struct.pack("<Q", (1 << 64) - 1)),
    ("bytes.u8", "U8", [3], b"\x00\x7f\xff"),
    ("mask", "BOOL", [2], b"\x00\x01"),
], {"format": "pt", "vtp.config": "{\"hidden\":8}"})
write(out + "/scalar-and-empty.safetensors", [
    ("scalar", "F32", [], struct.pack("<f", 7.0)),
    ("empty", "F16", [0, 4], b""),
    ("i8", "I8", [2], b"\x80\x7f"),
])
write(out + "/unaligned-f32.safetensors", [
    ("pad", "U8", [1], b"\x01"),
    ("odd", "F32", [2], struct.pack("<2f", 1.0, 2.0)),
])
EOF

# MARK: manifests: CSV (quoting, CRLF, BOM, extra columns, empty cells) and JSONL (extra keys, nesting,
# nulls, integer ids, blank lines).
clean manifest
printf 'path,label,caption,id,source\nimages/a.jpg,0,a cat,a,web\n/abs/b.png,12,"quoted, with comma",,\n"c d.webp",,"multi\nline ""caption""",c,x\n' \
    >"$corpus/manifest/basic.csv"
printf '\xef\xbb\xbfpath,caption\r\nx.jpg,caf\xc3\xa9\r\ny.jpg,\r\n' >"$corpus/manifest/bom-crlf.csv"
printf 'id,path,extra1,extra2\n1,a.jpg,,v\n2,b.jpg,u,\n' >"$corpus/manifest/id-first.csv"
cp examples/captions.jsonl "$corpus/manifest/captions.jsonl"
printf '{"path":"a.jpg","label":3,"id":17,"url":"https://e.org/a","size":[1,2.5e3],"ok":true}\n\n{"path":"b.png","caption":null,"label":null,"meta":{"k":"v\\u00e9"}}\r\n' \
    >"$corpus/manifest/metadata.jsonl"
printf '\xef\xbb\xbf{"path":"/abs/c.webp","id":"c"}' >"$corpus/manifest/bom-no-newline.jsonl"

# MARK: TOML: the shipped example configuration and the value forms the parser knows.
clean toml
cp config/vtp.toml "$corpus/toml/vtp.toml"
cat >"$corpus/toml/forms.toml" <<'EOF'
# every value form
[coordinator]
endpoint = "tcp://127.0.0.1:5555"   # trailing comment
heartbeat_interval_ms = 1_000
lease_seconds = 300
[worker]
precision = 'bf16'
threads = 0
max_image_pixels = 100_000_000
[storage]
root = "/data/out\t\"quoted\"\\"
[limits . x]
list = [1, 2.5, "three", 'four', true, [false]]
EOF
cat >"$corpus/toml/security.toml" <<'EOF'
[coordinator]
endpoint = "tcp://0.0.0.0:5555"
[security]
coordinator_secret_key_file = "/etc/vtp/coordinator.key"
coordinator_public_key_file = "/etc/vtp/coordinator.pub"
authorized_worker_keys_file = "/etc/vtp/workers.pub"
[database]
url = "postgresql://vtp@db/vtp"
state_dir = "~/.local/state/vtp"
EOF
du -sh "$corpus"/*
