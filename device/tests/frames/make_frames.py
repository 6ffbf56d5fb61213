#!/usr/bin/env python3
"""Regenerates the synthesised camera frames (not recorded from a camera) of device/tests/frame_formats.rs (run from this folder):

- bars_16x8.yuyv: a 16x8 YUYV frame (colour bars + a luma ramp), with the RGB a BT.601 limited-range
  decoder must give in bars_16x8.yuyv.rgb (computed here with the floating-point BT.601 matrix, rounded);
- bars_32x16.mjpg: a baseline JPEG (4:2:0) as an MJPG camera sends it, and bars_32x16.mjpg.rgb, the RGB
  that libjpeg (Pillow) decodes from it.
"""
import io

from PIL import Image

# YUYV: 8 two-pixel groups per row, varied Y/U/V.
w, h = 16, 8
yuyv = bytearray()
rgb = bytearray()
for y in range(h):
    for gx in range(w // 2):
        y0 = 16 + (gx * 27 + y * 11) % 220
        y1 = 16 + (gx * 31 + y * 7 + 40) % 220
        u = 16 + (gx * 37 + y * 13) % 225
        v = 16 + (gx * 53 + y * 17 + 90) % 225
        yuyv += bytes([y0, u, y1, v])
        for yy in (y0, y1):
            c, d, e = yy - 16, u - 128, v - 128
            r = 1.164383 * c + 1.596027 * e
            g = 1.164383 * c - 0.391762 * d - 0.812968 * e
            b = 1.164383 * c + 2.017232 * d
            rgb += bytes(max(0, min(255, int(round(x)))) for x in (r, g, b))
open("bars_16x8.yuyv", "wb").write(yuyv)
open("bars_16x8.yuyv.rgb", "wb").write(rgb)

# MJPG: colour bars.
img = Image.new("RGB", (32, 16))
bars = [(235, 235, 235), (235, 235, 16), (16, 235, 235), (16, 235, 16), (235, 16, 235), (235, 16, 16), (16, 16, 235), (16, 16, 16)]
for x in range(32):
    for y in range(16):
        img.putpixel((x, y), bars[x // 4])
buf = io.BytesIO()
img.save(buf, format="JPEG", quality=90, subsampling=2)
open("bars_32x16.mjpg", "wb").write(buf.getvalue())
open("bars_32x16.mjpg.rgb", "wb").write(Image.open(io.BytesIO(buf.getvalue())).convert("RGB").tobytes())
