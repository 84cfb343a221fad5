"""upscale: enlarges an image by a whole factor with Pillow's Lanczos filter and returns a PNG.
Synchronous: one image at a time per server."""

import tempfile
from pathlib import Path as FsPath

from cog import BaseRunner, Input, Path
from PIL import Image, ImageOps

# The largest image it makes, in pixels (width x height): a 64-megapixel RGBA image is
# 256 MiB in memory. Pillow's own decompression-bomb check bounds the input.
MAX_OUTPUT_PIXELS = 64 * 1024 * 1024


class Runner(BaseRunner):
    def run(
        self,
        image: Path = Input(description="The image to enlarge (PNG, JPEG, WebP, GIF or another format Pillow reads)."),
        scale: int = Input(description="How many times wider and taller the output is.", default=2, ge=1, le=8),
    ) -> Path:
        with Image.open(image) as src:
            src.load()
            # Apply the EXIF orientation, so the output is upright without it.
            img = ImageOps.exif_transpose(src)
        width, height = img.size
        out_width, out_height = width * scale, height * scale
        if out_width * out_height > MAX_OUTPUT_PIXELS:
            raise ValueError(
                f"a {width}x{height} image at scale {scale} would be {out_width}x{out_height}, "
                f"more than {MAX_OUTPUT_PIXELS} pixels"
            )
        # Lanczos works on whole channels: palette and bilevel images become RGB(A) first.
        if img.mode not in ("L", "LA", "RGB", "RGBA", "I", "F"):
            has_alpha = img.mode in ("PA", "La") or "transparency" in img.info
            img = img.convert("RGBA" if has_alpha else "RGB")
        print(f"upscale: {width}x{height} {img.mode} -> {out_width}x{out_height}", flush=True)
        out = img.resize((out_width, out_height), Image.Resampling.LANCZOS)
        target = FsPath(tempfile.mkdtemp(prefix="upscale-")) / "upscaled.png"
        out.save(target, format="PNG")
        return Path(target)
