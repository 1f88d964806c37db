"""`python -m train.eval loss`: held-out teacher-forced losses, split by object and background cells."""

from __future__ import annotations

import dataclasses
import json

import pytest

import train.eval.__main__ as cli
from model.layout import Layout, LayoutObject
from train.data import Record, read_records
from train.eval.loss import evaluate_loss, object_cell_mask
from train.shapes.world import SceneConfig
from train.synth import write_split


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    write_split(out, "val", 8, seed=11, cfg=SceneConfig(), progress=False)
    return out


def test_object_cells_are_the_cells_a_box_overlaps():
    layout = Layout(128, 128, (LayoutObject("red square", (0, 0, 64, 64)), LayoutObject("blue star", (97, 97, 100, 100))))
    record = Record("r", None, layout, ())
    mask = object_cell_mask([record], grid=4)  # 32 px cells
    assert mask.shape == (1, 16)
    assert sorted(mask[0].nonzero().flatten().tolist()) == [0, 1, 4, 5, 15]


def test_loss_command_on_a_real_tiny_model(data, tiny_echogen, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_model", lambda args: tiny_echogen)
    assert cli.main(["loss", "--data", str(data), "--max", "3", "--format", "json",  # reads val by default
                     "--no-progress"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["run"] == {"command": "loss", "data": str(data), "split": "val", "records": 3,
                              "model": None, "adapter": None}
    share = payload["object_token_share"]
    assert 0.0 < share < 1.0 and payload["answer_tokens"] > 0
    # The whole is the token-weighted mean of its two parts.
    parts = share * payload["l2i_ce_objects"] + (1 - share) * payload["l2i_ce_background"]
    assert payload["l2i_ce"] == pytest.approx(parts, rel=1e-5)
    assert payload["grounding_ce"] > 0


def test_the_builtin_model_draws_each_image_from_its_own_layout(data):
    """Teacher-forced on another record's image, the shipped model's object cells and grounding
    answers cost more: the losses read the layout and the image, not only token statistics."""
    from model.echogen import EchoGen

    model = EchoGen.load(None, half_weights=False)
    records = read_records(data, "val")
    swapped = [dataclasses.replace(r, image=records[(i + 1) % len(records)].image) for i, r in enumerate(records)]
    own, other = evaluate_loss(model, records), evaluate_loss(model, swapped)
    assert own["l2i_ce_objects"] < other["l2i_ce_objects"] - 0.5, (own, other)
    assert own["grounding_ce"] < other["grounding_ce"] - 0.5, (own, other)
