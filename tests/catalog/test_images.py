"""Image references and decoding: every bad case becomes a BadImage with a precise reason, and
load_item_images applies each on_bad_image policy exactly."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image

from mllmrec.catalog import (
    BadImage,
    BadImageError,
    CatalogError,
    load_image,
    load_item_images,
    resolve_image_ref,
)
from mllmrec.catalog.config import CatalogSpec
from mllmrec.types import Item, Rejection

# ---------------------------------------------------------------------------------------------
# resolve_image_ref
# ---------------------------------------------------------------------------------------------


def test_relative_absolute_and_file_uri(cat_dir):
    good = (cat_dir / "good.png").resolve()
    assert resolve_image_ref("good.png", cat_dir, False) == good
    assert resolve_image_ref("  img/../good.png ", cat_dir, False) == good
    assert resolve_image_ref(str(good), cat_dir, False) == good
    assert resolve_image_ref(good.as_uri(), cat_dir, False) == good
    spaced = cat_dir / "with space.png"
    assert "%20" in spaced.as_uri()
    assert resolve_image_ref(spaced.as_uri(), cat_dir, False) == spaced.resolve()
    assert resolve_image_ref("file://localhost" + str(good), cat_dir, False) == good
    assert resolve_image_ref("inner_link.png", cat_dir, False) == good  # symlink inside: fine


def test_file_uri_with_remote_host(cat_dir):
    with pytest.raises(BadImage, match="remote host 'server'"):
        resolve_image_ref("file://server/share/x.png", cat_dir, False)


@pytest.mark.parametrize(
    "ref",
    [
        "http://example.com/a.png",
        "https://example.com/a.png",
        "s3://bucket/a.png",
        "data:image/png;base64,AA",
    ],
)
def test_remote_urls_are_never_fetched(cat_dir, ref):
    with pytest.raises(BadImage) as e:
        resolve_image_ref(ref, cat_dir, allow_outside=True)
    assert e.value.reason.startswith(f"remote image URLs are not fetched: {ref}")


@pytest.mark.parametrize(
    "ref", ["../outside/secret.png", "escape.png", "file:///etc/hostname", "/etc/hostname"]
)
def test_paths_outside_the_folder(cat_dir, ref):
    with pytest.raises(BadImage, match="outside the catalogue folder") as e:
        resolve_image_ref(ref, cat_dir, allow_outside=False)
    assert "--allow-outside-paths" in e.value.reason


def test_outside_allowed_when_asked(cat_dir, tmp_path):
    secret = (tmp_path / "outside" / "secret.png").resolve()
    assert resolve_image_ref("../outside/secret.png", cat_dir, True) == secret
    assert resolve_image_ref("escape.png", cat_dir, True) == secret


def test_colon_in_a_local_name(cat_dir):
    with pytest.raises(BadImage, match=r"not fetched: img:1\.png \(write \./NAME"):
        resolve_image_ref("img:1.png", cat_dir, False)
    assert resolve_image_ref("./img:1.png", cat_dir, False) == cat_dir.resolve() / "img:1.png"


def test_empty_and_malformed_refs(cat_dir):
    with pytest.raises(BadImage, match="empty image reference"):
        resolve_image_ref("  ", cat_dir, False)
    with pytest.raises(BadImage, match="malformed image reference"):
        resolve_image_ref("http://[::1/a.png", cat_dir, False)
    with pytest.raises(BadImage, match="cannot resolve image path"):
        resolve_image_ref("a\0b.png", cat_dir, False)


# ---------------------------------------------------------------------------------------------
# load_image
# ---------------------------------------------------------------------------------------------


def test_load_good_png_and_jpg(cat_dir):
    im = load_image(cat_dir / "good.png", 1000)
    assert (im.mode, im.size, im.getpixel((0, 0))) == ("RGB", (8, 8), (200, 30, 30))
    assert im.im is not None  # fully loaded: no lazy file handle left
    jpg = load_image(cat_dir / "good.jpg", 1000)
    assert jpg.mode == "RGB" and jpg.size == (8, 8)


def test_transparency_becomes_white(tmp_path, make_image):
    path = make_image(tmp_path / "clear.png", mode="RGBA", color=(0, 0, 0, 0))
    assert load_image(path, 1000).getpixel((3, 3)) == (255, 255, 255)
    grey = make_image(tmp_path / "grey.png", mode="L", color=77)
    assert load_image(grey, 1000).getpixel((0, 0)) == (77, 77, 77)


@pytest.mark.parametrize(
    "name, cause",
    [
        ("missing.png", "image file not found"),
        ("img", "not a file"),
        ("random.jpg", "not a readable image"),
        ("empty.png", "not a readable image"),
        ("fake.eps", "not a readable image"),  # EPS is not among the formats we decode
        ("truncated.png", "corrupt or truncated image"),
        ("truncated.jpg", "corrupt or truncated image"),
    ],
)
def test_bad_files(cat_dir, name, cause):
    with pytest.raises(BadImage) as e:
        load_image(cat_dir / name, 10**6)
    assert cause in e.value.reason
    assert str(e.value) == e.value.reason


def test_too_many_pixels_real_image(cat_dir):
    with pytest.raises(BadImage, match=r"64x64 = 4096 pixels, more than max_image_pixels=4095"):
        load_image(cat_dir / "big.png", 4095)
    assert load_image(cat_dir / "big.png", 4096).size == (64, 64)


def test_size_is_checked_from_the_header_before_decoding(cat_dir):
    """header_bomb.png claims 10000x10000 but holds 64 bytes: refused for its size, not its data."""
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not leak
        with pytest.raises(BadImage, match=r"10000x10000 = 100000000 pixels.*not decoded"):
            load_image(cat_dir / "header_bomb.png", 40_000_000)
        # under a generous limit the header passes, and decoding then fails on the missing data
        with pytest.raises(BadImage, match="corrupt or truncated"):
            load_image(cat_dir / "header_bomb.png", 200_000_000)
    assert Image.MAX_IMAGE_PIXELS == before  # the global limit is never changed


@pytest.mark.parametrize("size", [(8000, 20), (20, 8000), (3, 3000), (201, 1)])
def test_extreme_aspect_ratio_is_refused_from_the_header(tmp_path, size):
    """The Qwen-VL resize raises on ratios over 200:1; such an image must be a BadImage, not a crash."""
    path = tmp_path / "banner.png"
    Image.new("L", size).save(path)
    with pytest.raises(BadImage, match=rf"{size[0]}x{size[1]}, an aspect ratio over 200:1.*not decoded"):
        load_image(path, 10**9)


def test_aspect_ratio_at_the_limit_is_accepted(tmp_path):
    Image.new("RGB", (400, 2)).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", 10**6).size == (400, 2)


def test_pil_hard_bomb_limit_is_caught(cat_dir):
    """20000x20000 is over twice PIL's default limit: PIL raises at open, we turn it into BadImage."""
    for limit in (40_000_000, 10**9):
        with pytest.raises(BadImage, match=r"decompression-bomb guard.*400000000 pixels"):
            load_image(cat_dir / "huge_bomb.png", limit)


# ---------------------------------------------------------------------------------------------
# load_item_images
# ---------------------------------------------------------------------------------------------


def spec(cat_dir, **kw) -> CatalogSpec:
    return CatalogSpec(catalog=str(cat_dir / "items.jsonl"), **kw)


def test_no_refs(cat_dir):
    assert load_item_images(Item("a", {"title": "x"}), cat_dir, spec(cat_dir)) == ([], None)


def test_good_images_in_order_capped_at_max_images(cat_dir):
    item = Item("a", {"title": "x"}, ("good.png", "img/second.png", "good.jpg"))
    images, rej = load_item_images(item, cat_dir, spec(cat_dir, max_images=2))
    assert rej is None
    assert [im.getpixel((0, 0)) for im in images] == [(200, 30, 30), (0, 255, 0)]


BAD = ("good.png", "truncated.png")


def test_policy_text_only(cat_dir):
    item = Item("a", {"title": "x"}, BAD)
    images, rej = load_item_images(item, cat_dir, spec(cat_dir, max_images=2))
    assert images == []
    assert rej.item_id == "a" and rej.action == "text-only"
    assert "truncated.png" in rej.reason and "corrupt or truncated" in rej.reason


def test_policy_text_only_without_text_rejects(cat_dir):
    item = Item("a", {"title": ""}, ("http://x/a.png",))
    images, rej = load_item_images(item, cat_dir, spec(cat_dir))
    assert images is None
    assert rej.action == "rejected"
    assert "remote image URLs are not fetched" in rej.reason and "no text to fall back on" in rej.reason


def test_policy_reject(cat_dir):
    item = Item("a", {"title": "x"}, ("../outside/secret.png",))
    images, rej = load_item_images(item, cat_dir, spec(cat_dir, on_bad_image="reject"))
    assert images is None
    assert rej == Rejection("a", rej.reason, "rejected")
    assert "--allow-outside-paths" in rej.reason


def test_policy_error(cat_dir):
    item = Item("item-9", {"title": "x"}, ("missing.png",))
    with pytest.raises(BadImageError) as e:
        load_item_images(item, cat_dir, spec(cat_dir, on_bad_image="error"))
    msg = str(e.value)
    assert "item-9" in msg and "missing.png" in msg and "image file not found" in msg
    assert isinstance(e.value, ValueError) and isinstance(e.value, CatalogError)
    assert (e.value.item_id, e.value.ref) == ("item-9", "missing.png")


def test_allow_outside_and_pixel_limit_come_from_spec(cat_dir):
    item = Item("a", {"title": "x"}, ("../outside/secret.png",))
    images, rej = load_item_images(item, cat_dir, spec(cat_dir, allow_outside_paths=True))
    assert rej is None and len(images) == 1
    big = Item("b", {"title": "x"}, ("big.png",))
    images, rej = load_item_images(big, cat_dir, spec(cat_dir, max_image_pixels=100))
    assert images == [] and "max_image_pixels=100" in rej.reason
