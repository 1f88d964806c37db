"""Absent phrases: the `none` answer, its training rows, presence read off the first answer
token, and drawings composed object by object from candidates by that presence."""

import numpy as np
import pytest
import torch

from model.compose import box_cells, compose_tokens, overlapping_groups
from model.layout import Layout, LayoutObject
from model.layout_text import box_answer, parse_box
from model.presence import PresenceProbe, answer_start_tokens
from model.prompts import grounding_target
from model.results import Grounding
from model.tokens import SpecialTokens
from train.losses import IGNORE, packed_grounding_inputs
from train.shapes.absent import absent_phrase
from train.shapes.world import parse_phrase


def test_none_is_a_valid_absent_answer():
    for text in ("none</box>", "<box>none</box>", " None "):
        parsed = parse_box(text)
        assert parsed.absent and parsed.valid and parsed.box is None
    assert not parse_box("[1, 2, 3, 4]</box>").absent
    assert not parse_box("nonexistent</box>").valid  # only the word itself
    assert grounding_target(None, "<eos>") == "none</box><eos>"
    assert box_answer((1, 2, 3, 4)) == "[1, 2, 3, 4]"


def test_absent_phrases_are_one_word_off_an_object_and_not_in_the_scene():
    layout = Layout(64, 64, (LayoutObject("red circle in front", (0, 0, 30, 30)),
                             LayoutObject("red square behind", (10, 10, 40, 40)),
                             LayoutObject("blue star", (40, 40, 60, 60))))
    present = {("red", "circle"), ("red", "square"), ("blue", "star")}
    rng = np.random.default_rng(0)
    phrases = [absent_phrase(layout, rng) for _ in range(200)]
    parsed = {parse_phrase(p)[:2] for p in phrases}
    assert not parsed & present
    for color, shape in parsed:  # one word kept from some object that is there
        assert any(color == c or shape == s for c, s in present)
    assert len(parsed) > 5  # both shape and color swaps, many of them
    assert absent_phrase(Layout(64, 64, (LayoutObject("a cat", (0, 0, 9, 9)),)), rng) is None


def test_absent_queries_are_answered_none(tiny_echogen):
    tok = tiny_echogen.tokenizer
    special = SpecialTokens.from_tokenizer(tok)
    batch = packed_grounding_inputs(tok, special, [(0, "red circle", (1, 2, 3, 4)), (0, "blue star", None)], 4, "cpu")
    labels = batch.labels[0]
    answers = tok.decode(labels[labels != IGNORE])
    assert answers == f"[1, 2, 3, 4]</box>{tok.eos_token}none</box>{tok.eos_token}"


def test_pmtp_absent_share_adds_one_none_query_per_grounded_record(tiny_janus_dir, tmp_path):
    from tests.test_train_losses import make_run
    from train import pmtp
    from train.config import ConfigError
    from train.data import synthesize

    data = tmp_path / "shapes"
    synthesize(data, 8, 32)
    run = make_run(pmtp.PMTPRun, tiny_janus_dir, data, tmp_path / "run", "--full", "--pmtp.absent_share", "1.0")
    make_batch, loss_fn, _ = pmtp.build(run)
    batch = make_batch(0, 0)
    tok = run.processor.tokenizer
    labels = batch.grounding.labels
    text = tok.decode(labels[labels != IGNORE])
    assert text.count("none</box>") == batch.pixels.shape[0]  # one per grounded record
    loss, _ = loss_fn(run.model, batch)
    assert torch.isfinite(loss)
    with pytest.raises(ConfigError, match="absent_share"):
        pmtp.PMTPConfig(absent_share=1.5)


def test_djo_absent_share_asks_the_real_and_the_generated_image_for_an_absent_phrase(tiny_janus_dir, tmp_path):
    from tests.test_train_losses import make_run
    from train import djo
    from train.config import ConfigError
    from train.data import synthesize

    data = tmp_path / "shapes"
    synthesize(data, 8, 32)
    run = make_run(djo.DJORun, tiny_janus_dir, data, tmp_path / "run", "--full", "--djo.absent_share", "1.0",
                   "--djo.caption_dropout", "0")
    make_batch, loss_fn, _ = djo.build(run)
    batch = make_batch(0, 0)
    tok = run.processor.tokenizer
    for queries in (batch.sup.grounding, batch.grounding):  # the real images', the generated images'
        labels = queries.labels
        assert tok.decode(labels[labels != IGNORE]).count("none</box>") == batch.sup.pixels.shape[0]
    loss, stats = loss_fn(run.model, batch)
    assert torch.isfinite(loss) and stats["djo_loss"] > 0
    with pytest.raises(ConfigError, match="absent_share"):
        djo.DJOConfig(absent_share=-0.1)


def test_presence_probe_reads_box_against_none_at_the_first_step_only():
    seen = []
    probe = PresenceProbe(box_token=1, none_token=2, constrain=lambda s, t, x: seen.append(s) or x + 1, width=2)
    logits = torch.zeros(4, 5)  # 2 prompts x 2 beams
    logits[0:2, 2] = np.log(3.0)  # prompt 0: none 3x as likely as a box
    out = probe(0, torch.zeros(4, 0, dtype=torch.long), logits)
    assert torch.allclose(probe.present, torch.tensor([0.25, 0.5]))
    assert torch.equal(out, logits + 1) and seen == [0]
    probe(1, torch.zeros(4, 1, dtype=torch.long), torch.full((4, 5), 9.0))
    assert torch.allclose(probe.present, torch.tensor([0.25, 0.5]))  # later steps leave it


def test_grounding_reports_presence(tiny_echogen):
    from PIL import Image

    assert answer_start_tokens(tiny_echogen.tokenizer) is not None
    found = tiny_echogen.ground([Image.new("RGB", (32, 32), "white")], [["red circle", "blue star"]])[0]
    assert all(0.0 <= g.present <= 1.0 for g in found)
    assert Grounding("x", None, False, "", 0.2).absent and not Grounding("x", None, False, "", 0.7).absent
    assert not Grounding("x", None, False, "").absent  # not measured


def test_box_cells_cover_the_box_on_the_token_grid():
    assert box_cells((0, 0, 8, 8), 32, 4) == {0}
    assert box_cells((7, 0, 9, 8), 32, 4) == {0, 1}
    assert box_cells((24, 24, 40, 40), 32, 4) == {15}  # clipped to the image
    assert box_cells((5, 5, 5, 5), 32, 4) == {0}  # at least one cell


def test_objects_with_shared_cells_are_chosen_together():
    assert sorted(map(sorted, overlapping_groups([{0, 1}, {5}, {1, 2}, {2, 9}, {7}]))) == [[0, 2, 3], [1], [4]]


def test_compose_takes_each_object_from_its_best_candidate():
    tokens = torch.stack([torch.full((16,), k) for k in range(3)])  # candidate k writes k everywhere
    cells = [{0, 1}, {10}, {1, 2}]  # objects 0 and 2 share cell 1
    scores = torch.tensor([[5.0, 0.0, 0.0],
                           [0.0, 9.0, 0.0],
                           [0.0, 0.0, 6.0]])
    out, chosen = compose_tokens(tokens, cells, scores)
    assert chosen == [2, 1, 2]  # group {0, 2}: candidate 0 sums 5, candidate 2 sums 6
    assert out[[0, 1, 2]].tolist() == [2, 2, 2] and out[10] == 1
    base = int(scores.sum(1).argmax())
    assert (out[[3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15]] == base).all()
    with pytest.raises(ValueError, match="scores"):
        compose_tokens(tokens, cells[:2], scores)


def test_compose_draws_one_image_per_layout(tiny_echogen):
    layouts = [Layout(64, 32, (LayoutObject("red circle", (2, 2, 20, 20)), LayoutObject("blue star", (30, 4, 60, 28)))),
               Layout(32, 32, (LayoutObject("green square", (0, 0, 16, 16)),))]
    images = tiny_echogen.compose(layouts, num_images=2, seed=3)
    assert len(images) == 2 and all(im.size == (tiny_echogen.image_size,) * 2 for im in images)
    single = tiny_echogen.compose(layouts, num_images=1, seed=3)
    drawn = tiny_echogen.generate([lay.resized(32, 32) for lay in layouts], 1, seed=3).images
    assert [im.tobytes() for im in single] == [row[0].tobytes() for row in drawn]


def test_roc_auc_counts_pairs_ranked_right_and_ties_half():
    from train.eval.metrics import roc_auc

    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.9], [0.5, 0.1]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    with pytest.raises(ValueError):
        roc_auc([], [0.1])


class PresenceOracle:
    """Grounds nothing, but knows which "<color> <shape>" names each image shows (by its size tag)."""

    def __init__(self, records, blind=False):
        self.names = {i: {f"{o['color']} {o['shape']}" for o in r["objects"]} for i, r in enumerate(records)}
        self.blind = blind

    def ground(self, images, phrases):
        from model.results import Grounding

        return [[Grounding(p, None, False, "", 0.7 if self.blind else float(p in self.names[im.info["i"]]))
                 for p in group] for im, group in zip(images, phrases)]


def test_presence_eval_separates_present_from_absent_phrases(tmp_path, monkeypatch):
    from PIL import Image

    from train.eval import presence
    from train.shapes.records import load_records
    from train.synth import write_split
    from train.shapes.world import SceneConfig

    write_split(tmp_path, "test", 12, 0, SceneConfig(size=64), progress=False)
    records = load_records(tmp_path, "test")

    def tagged(data_dir, record):  # each image knows which record it renders
        image = Image.new("RGB", (64, 64))
        image.info["i"] = records.index(record)
        return image

    monkeypatch.setattr(presence, "load_image", tagged)
    seeing = presence.evaluate_presence(PresenceOracle(records), records, tmp_path, batch_size=5)
    assert seeing["AUC"] == 1.0 and seeing["present_recall"] == 1.0 and seeing["absent_recall"] == 1.0
    assert seeing["absent_phrases"] == 12 and seeing["present_phrases"] >= 12
    blind = presence.evaluate_presence(PresenceOracle(records, blind=True), records, tmp_path)
    assert blind["AUC"] == 0.5 and blind["absent_recall"] == 0.0
    again = presence.evaluate_presence(PresenceOracle(records), records, tmp_path, batch_size=3)
    assert again == seeing, "absent phrases are seeded by record position, not by batch"


def test_compose_takes_each_object_from_the_candidate_that_regrounds_it_best(tiny_echogen, monkeypatch):
    from model.metrics import CycleScore, ObjectScore
    from model.results import CycleCandidate, CycleResult

    eg = tiny_echogen
    side, grid = eg.image_size, eg.token_grid
    layout = Layout(side, side, (LayoutObject("red circle", (0, 0, side / 2, side / 2)),
                                 LayoutObject("blue star", (side / 2, side / 2, side, side))))
    a, b = torch.zeros(eg.num_image_tokens, dtype=torch.long), torch.ones(eg.num_image_tokens, dtype=torch.long)

    def candidate(tokens, ious):
        score = CycleScore(tuple(ObjectScore(iou, 0.0, True) for iou in ious))
        return CycleCandidate(None, 0, (), score, tokens)

    # candidate a draws the star better; b (the better one overall) the circle
    result = CycleResult(layout, (candidate(b, [0.9, 0.3]), candidate(a, [0.2, 0.8])))
    monkeypatch.setattr(eg, "cycles", lambda *args, **kwargs: [result])
    expected = b.clone()
    star = torch.tensor(sorted(box_cells(layout.boxes[1], side, grid)))
    expected[star] = 0
    assert 0 < len(star) < eg.num_image_tokens
    picture = eg.compose([layout], num_images=2)[0]
    from model import generation
    from model.echogen import to_pil

    assert picture.tobytes() == to_pil(generation.decode_image_tokens(eg.model, expected[None]))[0].tobytes()


def test_cycle_keeps_each_objects_presence(tiny_echogen):
    layout = Layout(64, 32, (LayoutObject("red circle", (2, 2, 20, 20)), LayoutObject("blue star", (30, 4, 60, 28))))
    best = tiny_echogen.cycle(layout, num_images=1).candidates[0]
    assert all(0.0 <= g.present <= 1.0 for g in best.groundings)
    assert [o["present"] for o in best.to_dict()["objects"]] == [round(g.present, 4) for g in best.groundings]
