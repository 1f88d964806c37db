"""Training data: records, the letterbox frame, the seeded order, layout sources and the VQ cache."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from model.layout import Layout, LayoutError, LayoutObject
from train.config import ConfigError, DataConfig
from train.data import (
    layout_source, letterbox_layout, micro_batch_indices, micro_seed, parse_record, pick_queries, read_records,
    sample_indices,
)


def write_records(tmp_path, records, size=(40, 20)):
    (tmp_path / "images").mkdir()
    for r in records:
        Image.new("RGB", size, (250, 250, 250)).save(tmp_path / r["image"])
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


RECORD = {"id": "a", "image": "images/a.png", "width": 40, "height": 20, "caption": "a red circle",
          "objects": [{"phrase": "red circle", "box": [0, 0, 20, 20], "color": "red", "shape": "circle"}],
          "expressions": [{"text": "the left shape", "box": [0, 0, 20, 20], "object": 0}]}


def test_records_are_letterboxed_with_their_expressions(tmp_path):
    write_records(tmp_path, [RECORD, {**RECORD, "id": "b", "image": "images/b.png", "expressions": []}])
    records = read_records(tmp_path, "train")
    assert [r.id for r in records] == ["a", "b"]
    a = records[0]
    assert a.image == tmp_path / "images" / "a.png"
    assert (a.layout.width, a.layout.height) == (40, 40)
    assert a.layout.boxes == [(0.0, 10.0, 20.0, 30.0)]  # moved 10 px down into the square
    assert [q.phrase for q in a.queries] == ["red circle", "the left shape"]
    assert a.queries[1].box == (0.0, 10.0, 20.0, 30.0)
    assert len(read_records(tmp_path, "train", use_expressions=False)[0].queries) == 1
    assert len(read_records(tmp_path, "train", limit=1)) == 1


def test_a_phrase_shared_by_two_objects_is_asked_for_only_through_expressions(tmp_path):
    twins = {**RECORD, "width": 40, "height": 40, "objects": [
        {"phrase": "blue circle", "box": [0, 0, 10, 10], "color": "blue", "shape": "circle"},
        {"phrase": "blue circle", "box": [20, 20, 30, 30], "color": "blue", "shape": "circle"},
        {"phrase": "red star", "box": [0, 20, 10, 30], "color": "red", "shape": "star"}],
        "expressions": [{"text": "leftmost blue circle", "box": [0, 0, 10, 10], "object": 0},
                        {"text": "rightmost blue circle", "box": [20, 20, 30, 30], "object": 1}]}
    record = parse_record(twins, tmp_path)
    assert [q.phrase for q in record.queries] == ["red star", "leftmost blue circle", "rightmost blue circle"]
    assert len(record.layout.objects) == 3  # the L2I layout keeps both circles


def test_bad_records_name_the_line(tmp_path):
    write_records(tmp_path, [RECORD, {**RECORD, "objects": []}])
    with pytest.raises(LayoutError, match="line 2"):
        read_records(tmp_path, "train")
    with pytest.raises(LayoutError, match="image"):
        parse_record({k: v for k, v in RECORD.items() if k != "image"}, tmp_path)
    with pytest.raises(FileNotFoundError, match="train.synth"):
        read_records(tmp_path, "val")


def test_square_layouts_are_unchanged():
    layout = Layout(32, 32, (LayoutObject("x", (1.0, 2.0, 3.0, 4.0)),))
    assert letterbox_layout(layout) is layout


def test_order_is_seeded_and_covers_every_record_once_per_epoch():
    first = sample_indices(10, seed=3, start=0, count=10)
    assert sorted(first) == list(range(10))
    assert sample_indices(10, seed=3, start=0, count=10) == first
    assert sample_indices(10, seed=3, start=10, count=10) != first  # a new permutation per epoch
    assert sample_indices(10, seed=3, start=4, count=9) == (first + sample_indices(10, 3, 10, 10))[4:13]
    assert sample_indices(10, seed=4, start=0, count=10) != first


def test_processes_and_micro_batches_get_disjoint_slices():
    n, seed = 100, 0
    seen = []
    for step in range(2):
        for micro in range(2):
            for rank in range(3):
                seen += micro_batch_indices(n, seed, step, micro, grad_accum=2, batch_size=4, rank=rank, world=3)
    assert seen == sample_indices(n, seed, 0, 48)  # consecutive, no overlap, no gap
    assert micro_seed(0, 1, 0, 0) != micro_seed(0, 1, 0, 1) != micro_seed(0, 1, 1, 0)
    assert micro_seed(0, 1, 0, 0) == micro_seed(0, 1, 0, 0)


def test_pick_queries_is_seeded(tmp_path):
    write_records(tmp_path, [{**RECORD, "expressions": [{"text": f"e{i}", "box": [0, 0, 5, 5]} for i in range(6)]}])
    record = read_records(tmp_path, "train")[0]
    a = pick_queries(record, 3, np.random.default_rng(1))
    assert len(a) == 3 and a == pick_queries(record, 3, np.random.default_rng(1))
    assert len(pick_queries(record, 50, np.random.default_rng(1))) == 7


def test_layout_sources(tmp_path):
    rng = np.random.default_rng(0)
    for kind in ("random", "scene"):
        layout = layout_source(kind, size=64)(rng)
        assert (layout.width, layout.height) == (64, 64) and layout.objects
    (tmp_path / "l.jsonl").write_text(json.dumps({"width": 40, "height": 20, "objects": [
        {"phrase": "p", "box": [0, 0, 10, 10]}]}) + "\n")
    from_file = layout_source(str(tmp_path / "l.jsonl"))(rng)
    assert (from_file.width, from_file.height) == (40, 40)
    assert from_file.boxes == [(0.0, 10.0, 10.0, 20.0)]
    with pytest.raises(ValueError):
        layout_source("data", None)


def test_vq_cache_encodes_once(tmp_path, tiny_janus_dir, monkeypatch):
    from model.loading import load_janus
    from train import vq_cache

    write_records(tmp_path, [RECORD, {**RECORD, "id": "b", "image": "images/b.png"}], size=(32, 32))
    records = read_records(tmp_path, "train")
    model, processor = load_janus(tiny_janus_dir)
    tokens = vq_cache.load_or_encode(model, processor.image_processor, records, tmp_path / "cache")
    assert tokens.shape == (2, 16) and tokens.dtype == torch.long
    assert len(list((tmp_path / "cache").glob("vq-*.safetensors"))) == 1
    with torch.no_grad():
        pixels = processor.image_processor([Image.open(tmp_path / "images/a.png")], return_tensors="pt")["pixel_values"]
        assert torch.equal(tokens[0], model.model.vqmodel.encode(pixels).image_tokens.view(-1))

    monkeypatch.setattr(vq_cache, "encode_images", lambda *a, **k: pytest.fail("the cache was not used"))
    assert torch.equal(vq_cache.load_or_encode(model, processor.image_processor, records, tmp_path / "cache"), tokens)
    with torch.no_grad():
        model.model.vqmodel.quantize.embedding.weight.add_(1.0)  # another VQ: another cache file
    monkeypatch.undo()
    vq_cache.load_or_encode(model, processor.image_processor, records, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("vq-*.safetensors"))) == 2


def test_a_split_list_reads_the_splits_in_a_row(tmp_path):
    write_records(tmp_path, [RECORD])
    (tmp_path / "pairs.jsonl").write_text(json.dumps({**RECORD, "id": "p", "ground_objects": False}) + "\n")
    assert [r.id for r in read_records(tmp_path, "train+pairs")] == ["a", "p"]
    assert [r.id for r in read_records(tmp_path, "train+pairs", limit=1)] == ["a"]
    with pytest.raises(LayoutError, match="joined by"):
        read_records(tmp_path, "train+")
    with pytest.raises(ConfigError, match="joined by"):
        DataConfig(train_split="train++pairs")


def test_training_on_a_split_list_caches_each_split_once(tmp_path, tiny_janus_dir):
    """Stage 1 on train+pairs and stage 2 on train share train's VQ cache file."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from model.loading import load_janus
    from train.supervised import SupervisedData

    write_records(tmp_path, [RECORD, {**RECORD, "id": "b", "image": "images/b.png"}], size=(32, 32))
    (tmp_path / "pairs.jsonl").write_text(json.dumps({**RECORD, "id": "p", "ground_objects": False}) + "\n")
    model, processor = load_janus(tiny_janus_dir)

    def data(split):
        cfg = SimpleNamespace(data=DataConfig(data_dir=str(tmp_path), train_split=split, num_val_layouts=0))
        run = SimpleNamespace(cfg=cfg, janus=model, processor=processor,
                              accelerator=SimpleNamespace(main_process_first=nullcontext))
        return SupervisedData(run, caption_dropout=0.0)

    both = data("train+pairs")
    assert [r.id for r in both.records] == ["a", "b", "p"] and both.tokens.shape == (3, 16)
    assert len(list((tmp_path / "vq_cache").glob("vq-*.safetensors"))) == 2
    alone = data("train")
    assert torch.equal(alone.tokens, both.tokens[:2])
    assert len(list((tmp_path / "vq_cache").glob("vq-*.safetensors"))) == 2  # train's file was reused
