"""Grounding plumbing: batching over images and phrases, odd image modes, the cycle record."""

import numpy as np
import pytest
from PIL import Image

from model.images import ImageInputError, open_image, sanitize_image
from model.layout import LayoutError, parse_layout


def test_ground_returns_one_answer_per_phrase_in_order(tiny_echogen):
    images = [Image.new("RGB", (32, 32), "white"), Image.new("RGB", (64, 32), "blue")]
    phrases = [["red circle", "blue square", "star"], ["green triangle"]]
    found = tiny_echogen.ground(images, phrases)
    assert [[g.phrase for g in group] for group in found] == phrases
    for image, group in zip(images, found):
        for g in group:
            assert isinstance(g.text, str)
            if g.box is not None:  # pixel box inside that image
                x1, y1, x2, y2 = g.box
                assert 0 <= x1 <= x2 <= image.width and 0 <= y1 <= y2 <= image.height


def test_ground_batches_do_not_change_answers(tiny_echogen):
    image = Image.new("RGB", (32, 32), (200, 30, 30))
    together = tiny_echogen.ground([image, image], [["red circle"], ["red circle", "blue square"]])
    alone = tiny_echogen.ground([image], [["blue square"]])
    assert together[1][1].text == alone[0][0].text
    assert together[0][0].text == together[1][0].text


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P", "I;16", "CMYK", "1", "F"])
def test_ground_accepts_odd_image_modes(tiny_echogen, mode):
    image = Image.new("RGB", (40, 30), (10, 200, 30)).convert(mode)
    found = tiny_echogen.ground([image], [["thing"]])
    assert len(found[0]) == 1


def test_ground_rejects_empty_phrases(tiny_echogen):
    with pytest.raises(LayoutError, match="empty"):
        tiny_echogen.ground([Image.new("RGB", (32, 32))], [[" "]])
    with pytest.raises(ValueError, match="phrase lists"):
        tiny_echogen.ground([Image.new("RGB", (32, 32))], [])


def test_cycle_scores_every_object_and_sorts_candidates(tiny_echogen):
    layout = parse_layout({"width": 300, "height": 200, "caption": "",
                           "objects": [{"phrase": "red circle", "box": [10, 10, 100, 100]},
                                       {"phrase": "blue square", "box": [150, 50, 290, 190]}]})
    result = tiny_echogen.cycle(layout, num_images=3, seed=5)
    assert len(result.candidates) == 3
    ious = [c.score.mean_iou for c in result.candidates]
    assert ious == sorted(ious, reverse=True)
    assert sorted(c.seed for c in result.candidates) == [5, 6, 7]
    for cand in result.candidates:
        assert len(cand.groundings) == len(cand.score.objects) == 2
        record = cand.to_dict()
        assert set(record) >= {"seed", "mean_iou", "mean_l1", "pass_rate", "objects"}
        for g in cand.groundings:  # boxes come back in the layout's pixel frame
            assert g.box is None or (g.box[2] <= 300 + 1e-6 and g.box[3] <= 200 + 1e-6)


def test_cycles_of_several_layouts_match_one_cycle_each(tiny_echogen):
    layouts = [parse_layout({"width": 300, "height": 200, "caption": "",
                             "objects": [{"phrase": "red circle", "box": [10, 10, 100, 100]},
                                         {"phrase": "blue square", "box": [150, 50, 290, 190]}]}),
               parse_layout({"width": 64, "height": 64, "caption": "a scene",
                             "objects": [{"phrase": "green star", "box": [4, 8, 40, 60]}]})]
    batched = tiny_echogen.cycles(layouts, num_images=2, seed=3)
    for layout, together in zip(layouts, batched):
        alone = tiny_echogen.cycle(layout, num_images=2, seed=3)
        assert together.layout == layout
        assert [c.seed for c in together.candidates] == [c.seed for c in alone.candidates]
        assert [c.to_dict() for c in together.candidates] == [c.to_dict() for c in alone.candidates]
        assert [c.image.tobytes() for c in together.candidates] == [c.image.tobytes() for c in alone.candidates]


def test_sanitize_handles_exif_alpha_16bit_and_animation(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert sanitize_image(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    deep = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert sanitize_image(deep).getpixel((0, 0)) == (255, 255, 255)
    rotated = Image.new("RGB", (30, 10), "red")
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    path = tmp_path / "rotated.jpg"
    rotated.save(path, exif=exif)
    assert open_image(path).size == (10, 30)
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert open_image(gif).getpixel((0, 0))[0] > 200  # first frame (red)


def test_bad_image_files_raise_clear_errors(tmp_path):
    with pytest.raises(ImageInputError, match="not found"):
        open_image(tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ImageInputError, match="not a readable image"):
        open_image(junk)
    huge = Image.new("1", (8000, 6000))
    path = tmp_path / "huge.png"
    huge.save(path)
    with pytest.raises(ImageInputError, match="megapixels"):
        open_image(path)


def test_phrases_of_one_image_share_its_prompt_start(spread_echogen, monkeypatch):
    """Each image's user tag and image block run once for all its phrases, and the answers are
    the ones the full prompts give, for phrases of different lengths over several images."""
    from model import inputs

    eg = spread_echogen
    images = [Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (48, 32), (20, 40, 220))]
    phrases = [["red circle", "a small blue square behind the star", "star"], ["green triangle", "star"]]
    calls = []
    original = inputs.split_shared_start
    monkeypatch.setattr(inputs, "split_shared_start", lambda *a: calls.append(original(*a)) or calls[-1])
    shared = eg.ground(images, phrases)
    assert calls and all(c is not None for c in calls)  # control: the start was shared
    monkeypatch.setattr(inputs, "split_shared_start", lambda *a: None)
    full = eg.ground(images, phrases)
    assert [[g.text for g in group] for group in shared] == [[g.text for g in group] for group in full]


def test_a_shared_start_is_kept_once_and_answers_as_when_copied(spread_echogen, monkeypatch):
    """The decode step attends to each image's prompt start kept once for all its phrases and
    beams (model.kv_cache.share_prefix); the answers are those of the start copied to every row."""
    from model import generation
    from model.fused_step import FusedLayers

    eg = spread_echogen
    images = [Image.new("RGB", (32, 32), (200, 30, 30)), Image.new("RGB", (48, 32), (20, 40, 220))]
    phrases = [["red circle", "a small blue square behind the star"], ["green triangle", "star", "a star"]]
    calls = []
    original = generation.share_prefix
    monkeypatch.setattr(generation, "share_prefix", lambda *a: calls.append(1) or original(*a))
    shared = eg.ground(images, phrases)
    assert calls  # control: the start was kept once
    monkeypatch.setattr(FusedLayers, "attends_shared_prefixes", property(lambda self: False))
    copied = eg.ground(images, phrases)
    assert len(calls) == 1
    assert [[g.text for g in group] for group in shared] == [[g.text for g in group] for group in copied]


def test_split_shared_start_rebuilds_each_prompt_or_refuses():
    import torch

    from model.inputs import PromptBatch, split_shared_start

    pad, end = 0, 9
    ids = torch.tensor([[0, 0, 5, 6, 9, 7, 8], [5, 6, 9, 1, 2, 3, 4], [0, 5, 6, 9, 3, 3, 1]])
    batch = PromptBatch(ids, (ids != pad).long())
    shared = split_shared_start(batch, end, pad)
    assert shared.ids.tolist() == [5, 6, 9]
    for row, rest, mask in zip(ids.tolist(), shared.rest.input_ids.tolist(), shared.rest.attention_mask.tolist()):
        real = [t for t in row if t != pad]
        assert real == shared.ids.tolist() + [t for t, m in zip(rest, mask) if m]
        assert mask == sorted(mask)  # left-padded
    differing = ids.clone()
    differing[1, 1] = 4
    assert split_shared_start(PromptBatch(differing, batch.attention_mask), end, pad) is None
    no_end = torch.tensor([[5, 6, 7, 8]])
    assert split_shared_start(PromptBatch(no_end, torch.ones_like(no_end)), end, pad) is None
    ends_last = torch.tensor([[5, 6, 9]])
    assert split_shared_start(PromptBatch(ends_last, torch.ones_like(ends_last)), end, pad) is None


def test_a_shared_start_needs_the_start_row_of_every_prompt(tiny_echogen):
    import torch

    from model import generation

    eg = tiny_echogen
    request = generation.DecodeRequest(
        inputs_embeds=torch.zeros(2, 3, eg.model.config.text_config.hidden_size),
        attention_mask=torch.ones(2, 3, dtype=torch.long), num_tokens=2,
        head=generation.text_head(eg.model), embed=generation.text_embed(eg.model),
        start_embeds=torch.zeros(1, 4, eg.model.config.text_config.hidden_size))
    with pytest.raises(ValueError, match="start_index"):
        generation.decode(eg.model, request)
