"""Token-level plumbing: placeholder expansion, slot lookup, tokenizing with slots, pooling."""

from __future__ import annotations

import pytest
import torch

from mllmrec.backbone.base import render_with_chat_template
from mllmrec.backbone.pooling import expand_placeholders, pool, slot_indices, tokenize_with_slots
from mllmrec.prompts.render import render
from mllmrec.prompts.templates import load_template
from mllmrec.testing.tokenizer import build_tokenizer
from mllmrec.types import Item

PH = "<|image_pad|>"


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


# ---------------------------------------------------------------------------------------------
# expand_placeholders
# ---------------------------------------------------------------------------------------------
def test_expand_repeats_each_placeholder_by_its_count():
    text = f"a{PH}b{PH}c"
    out, slots = expand_placeholders(text, PH, [3, 2], {})
    assert out == f"a{PH * 3}b{PH * 2}c"
    assert slots == {}


def test_expand_count_one_is_identity_and_zero_removes():
    text = f"x{PH}y"
    assert expand_placeholders(text, PH, [1], {"s": 5}) == (text, {"s": 5})
    out, slots = expand_placeholders(text, PH, [0], {"s": len(text)})
    assert out == "xy"
    assert slots == {"s": 2}


def test_expand_shifts_only_slots_after_an_expanded_placeholder():
    text = f'head "{PH}" mid {PH} tail'
    first, second = text.index(PH), text.index(PH, text.index(PH) + 1)
    slots = {
        "start": 0,
        "before": first - 1,  # inside the quote before the first placeholder
        "at_first": first,  # exactly where the first placeholder starts: nothing before it grows
        "between": first + len(PH) + 1,  # after the first, before the second
        "at_second": second,  # grows only by the first expansion
        "end": len(text),
    }
    n1, n2 = 4, 3
    out, new = expand_placeholders(text, PH, [n1, n2], slots)
    d1, d2 = len(PH) * (n1 - 1), len(PH) * (n2 - 1)
    assert new == {
        "start": 0,
        "before": slots["before"],
        "at_first": slots["at_first"],
        "between": slots["between"] + d1,
        "at_second": slots["at_second"] + d1,
        "end": slots["end"] + d1 + d2,
    }
    assert len(out) == len(text) + d1 + d2
    # the characters around each slot are unchanged by the expansion
    for ch in ("before", "between"):
        assert out[new[ch] - 1 : new[ch] + 1] == text[slots[ch] - 1 : slots[ch] + 1]
    assert out[: new["between"]].endswith(PH * n1 + '"')
    assert out[new["at_second"] :] == PH * n2 + " tail"


def test_expand_keeps_micl_visual_slot_after_the_images():
    item = Item("v", {"title": "Red mug"}, ("a.png", "b.png"))
    r = render(load_template("notellm2-micl"), item, [object(), object()], image_placeholder=PH)
    out, slots = expand_placeholders(r.text, PH, [5, 2], r.slots)
    assert out.count(PH) == 7
    off = slots["visual"]
    assert slots["visual"] == r.slots["visual"] + len(PH) * (4 + 1)
    assert out[off - 1] == '"' and out[:off].count(PH) == 7
    assert out[off:] == r.text[r.slots["visual"] :]


@pytest.mark.parametrize(
    ("text", "counts", "match"),
    [
        ("no images here", [1], "fewer"),
        (f"{PH}", [1, 1], "fewer"),
        (f"{PH}{PH}", [2], "more"),
        (f"{PH} and {PH}", [], "more"),
    ],
)
def test_expand_placeholder_count_mismatch(text, counts, match):
    with pytest.raises(ValueError, match=match):
        expand_placeholders(text, PH, counts, {})


def test_expand_without_placeholders_or_images_is_a_no_op():
    assert expand_placeholders("plain text", PH, [], {"s": 3}) == ("plain text", {"s": 3})


# ---------------------------------------------------------------------------------------------
# slot_indices on hand-made offsets
# ---------------------------------------------------------------------------------------------
def offsets(*rows: list[tuple[int, int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def test_slot_index_left_padded_rows():
    # row 0: 2 pads, then tokens "ab" (0,2) "c" (2,3) "de" (3,5)
    # row 1: no pads, tokens "a" (0,1) "b" (1,2) "c" (2,3) "d" (3,4) "e" (4,5)
    offs = offsets(
        [(0, 0), (0, 0), (0, 2), (2, 3), (3, 5)],
        [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)],
    )
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert slot_indices(offs, mask, [3, 3]).tolist() == [3, 2]  # the last token ending by char 3 ("c")
    assert slot_indices(offs, mask, [2, 2]).tolist() == [2, 1]
    assert slot_indices(offs, mask, [5, 5]).tolist() == [4, 4]
    with pytest.raises(ValueError, match="before the first token"):  # "ab" straddles offset 1 in row 0
        slot_indices(offs, mask, [1, 1])


def test_slot_index_token_spanning_the_boundary():
    # "abcdef": tokens (0,2) (2,5) (5,6); a slot at offset 3 or 4 cuts the middle token, which
    # would see text after the slot, so the token before it is taken
    offs = offsets([(0, 0), (0, 2), (2, 5), (5, 6)])
    mask = torch.tensor([[0, 1, 1, 1]])
    assert slot_indices(offs, mask, [3]).tolist() == [1]
    assert slot_indices(offs, mask, [4]).tolist() == [1]
    assert slot_indices(offs, mask, [2]).tolist() == [1]  # exactly at a boundary: the token before
    assert slot_indices(offs, mask, [6]).tolist() == [3]


def test_slot_index_skips_special_tokens_without_offsets():
    # a BOS-like special token (0,0) at the start and an EOS-like one (0,0) after the text
    offs = offsets([(0, 0), (0, 0), (0, 3), (3, 4), (0, 0)])
    mask = torch.tensor([[0, 1, 1, 1, 1]])
    assert slot_indices(offs, mask, [4]).tolist() == [3]
    assert slot_indices(offs, mask, [3]).tolist() == [2]


def test_slot_index_ignores_masked_positions_with_real_offsets():
    # a padded position must never be picked, whatever offsets it carries
    offs = offsets([(0, 5), (0, 1), (1, 2)])
    mask = torch.tensor([[0, 1, 1]])
    assert slot_indices(offs, mask, [5]).tolist() == [2]


def test_slot_before_the_first_token_raises():
    offs = offsets([(0, 0), (0, 2), (2, 4)], [(0, 1), (1, 2), (2, 4)])
    mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="before the first token"):
        slot_indices(offs, mask, [2, 0])


# ---------------------------------------------------------------------------------------------
# tokenize_with_slots with the offline Qwen-shaped tokenizer
# ---------------------------------------------------------------------------------------------
def token_holding(tok, text: str, char: int) -> int:
    """Unpadded index of the token whose span holds `char`, found by tokenizing `text` alone."""
    spans = tok([text], return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"][0]
    return next(j for j, (a, b) in enumerate(spans) if a <= char < b)


def micl_batch(tok) -> list:
    t = load_template("notellm2-micl")

    def chat(u, s):
        return render_with_chat_template(tok, u, s)

    return [
        render(
            t,
            Item("a", {"title": "red wool chair", "description": "a modern chair with stripes"}, ("a.png",)),
            [object()],
            image_placeholder=PH,
            chat=chat,
        ),
        render(t, Item("b", {"title": "mug"}), [], image_placeholder=PH, chat=chat),
        render(
            t,
            Item("c", {"title": "lamp"}, ("c.png", "d.png")),
            [object(), object()],
            image_placeholder=PH,
            chat=chat,
        ),
    ]


def test_tokenize_left_pads_and_finds_the_slot_token(tok):
    batch = micl_batch(tok)
    texts, slots = [r.text for r in batch], [r.slots for r in batch]
    enc, idx = tokenize_with_slots(tok, texts, slots)
    assert set(enc) == {"input_ids", "attention_mask"}
    assert set(idx) == {"visual"}
    ids, mask = enc["input_ids"], enc["attention_mask"]
    n, length = ids.shape
    assert n == 3 and idx["visual"].shape == (3,) and idx["visual"].dtype == torch.long
    lengths = mask.sum(dim=1)
    assert len(set(lengths.tolist())) > 1  # the batch really needs padding
    for row, r in enumerate(batch):
        pad = length - int(lengths[row])
        assert mask[row, :pad].sum() == 0 and bool(mask[row, pad:].all())  # left padding
        assert ids[row, pad:].tolist() == tok([r.text], add_special_tokens=False)["input_ids"][0]
        off = r.slots["visual"]
        assert r.text[off - 1] == '"'
        expected = pad + token_holding(tok, r.text, off - 1)
        assert int(idx["visual"][row]) == expected
        assert '"' in tok.decode(ids[row, expected])
        # the mm token (index -1) is the answer prefix, the slot token lies well before it
        assert tok.decode(ids[row, -1]).endswith('"') and expected < length - 1


def test_tokenize_slot_inside_a_token(tok):
    text = "compress this image into one word"
    off = text.index("this") + 2  # between "th" and "is"
    enc, idx = tokenize_with_slots(tok, [text, "short"], [{"cut": off}, {"cut": 3}])
    spans = tok([text], return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"][0]
    j = token_holding(tok, text, off - 1)
    assert spans[j][0] < off < spans[j][1]  # the token holding the char before the slot straddles it
    assert int(idx["cut"][0]) == j - 1  # so the token before it is taken (longest row: no padding)
    assert spans[j - 1][1] <= off
    pad = enc["input_ids"].shape[1] - int(enc["attention_mask"][1].sum())
    short_spans = tok(["short"], return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"][0]
    expected = max(k for k, (_, end) in enumerate(short_spans) if end <= 3)
    assert int(idx["cut"][1]) == pad + expected


def test_tokenize_without_slots_returns_no_indices(tok):
    enc, idx = tokenize_with_slots(tok, ["one word", "two words here"], [{}, {}])
    assert idx == {}
    assert set(enc) == {"input_ids", "attention_mask"}
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][1, 0] == 1


def test_tokenize_refuses_right_padding(tok, monkeypatch):
    monkeypatch.setattr(tok, "padding_side", "right")
    with pytest.raises(ValueError, match="left-padding"):
        tokenize_with_slots(tok, ["a", "bb"], [{}, {}])


@pytest.mark.parametrize(
    "slots",
    [
        [{"visual": 1}, {}],
        [{"visual": 1}, {"text": 1}],
        [{"visual": 1}, {"visual": 1, "text": 2}],
    ],
)
def test_tokenize_refuses_mixed_slot_channels(tok, slots):
    with pytest.raises(ValueError, match="same slots"):
        tokenize_with_slots(tok, ["abc", "def"], slots)


# ---------------------------------------------------------------------------------------------
# pool
# ---------------------------------------------------------------------------------------------
def test_pool_takes_last_token_and_slot_rows():
    hidden = torch.arange(3 * 5 * 4, dtype=torch.bfloat16).reshape(3, 5, 4)
    idx = {"visual": torch.tensor([1, 4, 0]), "text": torch.tensor([2, 2, 3])}
    out = pool(hidden, idx)
    assert set(out) == {"mm", "visual", "text"}
    for v in out.values():
        assert v.dtype == torch.float32 and v.device.type == "cpu" and v.shape == (3, 4)
    ref = hidden.float()
    assert torch.equal(out["mm"], ref[:, -1])
    assert torch.equal(out["visual"], torch.stack([ref[0, 1], ref[1, 4], ref[2, 0]]))
    assert torch.equal(out["text"], torch.stack([ref[0, 2], ref[1, 2], ref[2, 3]]))


def test_pool_mm_only():
    hidden = torch.randn(2, 3, 6, dtype=torch.float16)
    out = pool(hidden, {})
    assert list(out) == ["mm"]
    assert out["mm"].dtype == torch.float32
    assert torch.equal(out["mm"], hidden[:, -1].float())
