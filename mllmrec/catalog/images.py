"""Resolve and load item images safely, turning every failure into a per-item decision.

A catalogue names images by path; a bad one (missing, corrupt, huge, remote, outside the
catalogue folder) must not stop a run over a million items, so failures are `BadImage` with a
short reason, and `load_item_images` applies the user's `on_bad_image` policy to them. Nothing is
ever fetched over the network, and an image's size is checked from its header before any pixel is
decoded (decompression bombs).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

from PIL import Image, ImageOps

from mllmrec.catalog.config import CatalogSpec
from mllmrec.catalog.readers import CatalogError
from mllmrec.config import ConfigError
from mllmrec.types import Item, Rejection

# Formats we agree to decode. Restricting Image.open keeps odd plugins out of the path, e.g. EPS,
# which PIL renders by running Ghostscript on the file.
SAFE_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
BAD_IMAGE_POLICIES = ("text-only", "reject", "error")
# The Qwen-VL image processors refuse (ValueError, "absolute aspect ratio must be smaller than 200")
# any image whose long side is over 200 times its short side, and one such item would stop a whole
# run. Checked from the header with the pixel count, so it follows on_bad_image like any bad image.
MAX_ASPECT_RATIO = 200


class BadImage(Exception):
    """One image reference cannot be used; `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadImageError(CatalogError):
    """Raised under on_bad_image="error": names the item, the image reference and the reason."""

    def __init__(self, item_id: str, ref: str, reason: str) -> None:
        super().__init__(
            f"item {item_id!r}: image {ref!r}: {reason} "
            "(use --on-bad-image text-only or reject to go on without it)"
        )
        self.item_id = item_id
        self.ref = ref
        self.reason = reason


def resolve_image_ref(ref: str, base_dir: Path, allow_outside: bool) -> Path:
    """The local file an image reference points to, symlinks and '..' resolved.

    Accepts a path relative to `base_dir` (the catalogue's folder), an absolute path, or a
    `file://` URI (percent-decoded). Any other URI scheme (http, https, s3 ...) is refused: remote
    images are never fetched. Unless `allow_outside`, the resolved path must lie inside `base_dir`,
    so a catalogue cannot make us read arbitrary files through '..' or a symlink.
    """
    ref = ref.strip()
    if not ref:
        raise BadImage("empty image reference")
    try:
        parts = urlsplit(ref)
    except ValueError as e:  # e.g. an unbalanced '[' in a URL's host part
        raise BadImage(f"malformed image reference {ref!r}: {e}") from e
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BadImage(f"file:// URI with a remote host {parts.netloc!r} is not supported: {ref}")
        raw = unquote(parts.path)
    elif len(scheme) > 1:  # one letter would be a Windows drive ("C:\\...")
        hint = "" if "://" in ref else " (write ./NAME for a local file whose name holds ':')"
        raise BadImage(f"remote image URLs are not fetched: {ref}{hint}")
    else:
        raw = ref
    base = base_dir.resolve()
    try:
        path = (base / raw).resolve()  # an absolute `raw` replaces `base`
    except (OSError, ValueError, RuntimeError) as e:  # NUL bytes, symlink loops
        raise BadImage(f"cannot resolve image path {ref!r}: {e}") from e
    if not allow_outside and not path.is_relative_to(base):
        raise BadImage(
            f"image path {ref!r} resolves to {path}, outside the catalogue folder {base}; "
            "pass --allow-outside-paths to allow it"
        )
    return path


@functools.cache
def _open_formats() -> tuple[str, ...]:
    """SAFE_FORMATS that this Pillow build can open (Image.open fails on unregistered names)."""
    Image.init()
    return tuple(f for f in SAFE_FORMATS if f in Image.OPEN)


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB copy with EXIF rotation applied and transparency composited onto white.

    A plain convert("RGB") would show transparent pixels as whatever colour they store (often
    black), which changes what the model sees.
    """
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block should not cost us an otherwise good image
        pass
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return im.convert("RGB")


def check_size(size: tuple[int, int], max_pixels: int, path: Path) -> None:
    """Refuse a (width, height) read from a header: too many pixels, or a shape the resize rejects.

    The one place both the loader and the token-count probe ask, so a banner the model cannot take
    is never measured (the measuring itself runs the model's resize) nor decoded.
    """
    width, height = size
    if width * height > max_pixels:
        raise BadImage(
            f"image is {width}x{height} = {width * height} pixels, more than "
            f"max_image_pixels={max_pixels} (not decoded): {path}"
        )
    if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
        raise BadImage(
            f"image is {width}x{height}, an aspect ratio over {MAX_ASPECT_RATIO}:1 that the "
            f"vision models cannot resize (not decoded): {path}"
        )


def load_image(path: Path, max_pixels: int) -> Image.Image:
    """Decode one image file into a fully loaded RGB image, or raise `BadImage`.

    The size is read from the header and width*height compared with `max_pixels` (and the aspect
    ratio with MAX_ASPECT_RATIO) before any pixel data is decoded. PIL's own decompression-bomb guard (which depends on the process-wide
    `Image.MAX_IMAGE_PIXELS`, left untouched here) still refuses absurd sizes; its warning is
    silenced because the explicit `max_pixels` check replaces it.
    """
    if not path.exists():
        raise BadImage(f"image file not found: {path}")
    if not path.is_file():
        raise BadImage(f"image path is not a file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=_open_formats()) as im:
                check_size(im.size, max_pixels, path)
                im.load()
                return _to_rgb(im)
    except BadImage:
        raise
    except Image.DecompressionBombError as e:
        raise BadImage(f"refused by PIL's decompression-bomb guard: {e}") from e
    except Image.UnidentifiedImageError as e:
        raise BadImage(f"not a readable image (unknown format or corrupt header): {path}") from e
    except PermissionError as e:
        raise BadImage(f"permission denied reading image: {path}") from e
    except Exception as e:  # any decoder failure (OSError, SyntaxError, ...) makes it unusable
        raise BadImage(f"corrupt or truncated image ({type(e).__name__}: {e}): {path}") from e


def load_item_images(
    item: Item, base_dir: Path, spec: CatalogSpec
) -> tuple[list[Image.Image] | None, Rejection | None]:
    """Load an item's images (at most spec.max_images) and apply spec.on_bad_image.

    If any image is bad the item is not given a partial image set:
    - "text-only": ([], Rejection(action="text-only")): embed from text alone. An item that has
      no text either would then be empty, so it is rejected instead (action="rejected").
    - "reject": (None, Rejection(action="rejected")): leave the item out.
    - "error": raise BadImageError naming the item, reference and reason.
    An item without image references gives ([], None).
    """
    if spec.on_bad_image not in BAD_IMAGE_POLICIES:
        raise ConfigError(
            f"on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {spec.on_bad_image!r}"
        )
    images: list[Image.Image] = []
    for ref in item.image_refs[: spec.max_images]:
        try:
            path = resolve_image_ref(ref, base_dir, spec.allow_outside_paths)
            images.append(load_image(path, spec.max_image_pixels))
        except BadImage as e:
            for im in images:
                im.close()
            if spec.on_bad_image == "error":
                raise BadImageError(item.id, ref, e.reason) from e
            reason = f"bad image {ref!r}: {e.reason}"
            if spec.on_bad_image == "reject":
                return None, Rejection(item.id, reason, action="rejected")
            if not any(item.texts.values()):
                return None, Rejection(item.id, f"{reason}; no text to fall back on", action="rejected")
            return [], Rejection(item.id, reason, action="text-only")
    return images, None


def probe_image_sizes(item: Item, base_dir: Path, spec: CatalogSpec) -> list[tuple[int, int]]:
    """(width, height) of an item's images from their headers, without decoding pixels.

    Used to sort items by token count before any image is decoded, so only one batch of decoded
    images is in memory at a time. Problems are not reported here: `load_item_images` does that.
    """
    sizes = []
    for ref in item.image_refs[: spec.max_images]:
        try:
            path = resolve_image_ref(ref, base_dir, spec.allow_outside_paths)
            with Image.open(path, formats=_open_formats()) as im:
                check_size(im.size, spec.max_image_pixels, path)
                sizes.append(im.size)
        except Exception:  # noqa: BLE001 - any failure is reported (with its reason) at load time
            return []
    return sizes
