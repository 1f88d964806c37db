"""`python -m train.eval reward`: does stage 3's reward rank a group's images like the detector?"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import train.eval.__main__ as cli
from shapes_fakes import DriftingModel
from train.eval.reward_alignment import evaluate_reward_alignment, group_agreement, summarize
from train.shapes.records import load_records
from train.shapes.world import SceneConfig
from train.synth import write_split


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    write_split(out, "test", 6, seed=5, cfg=SceneConfig(), progress=False)
    return out


@pytest.fixture(scope="module")
def records(data):
    return load_records(data, "test")


def test_agreement_of_a_faithful_reward_a_reversed_one_and_a_flat_one():
    fidelity = [0.2, 0.9, 0.5, 0.4]
    same = group_agreement([1.0, 3.0, 2.5, 2.0], fidelity)
    assert same.pearson > 0.9 and same.spearman == pytest.approx(1.0)
    assert same.pick_gain == same.best_gain == pytest.approx(0.9 - 0.5)
    reversed_ = group_agreement([3.0, 1.0, 2.0, 2.5], fidelity)
    assert reversed_.spearman == pytest.approx(-1.0) and reversed_.pick_gain == pytest.approx(0.2 - 0.5)
    assert group_agreement([2.0] * 4, fidelity) is None  # no signal for GRPO
    assert group_agreement([1.0, 2.0, 3.0, 4.0], [0.5] * 4) is None  # nothing to find


def test_spearman_shares_ranks_between_ties():
    tied = group_agreement([1.0, 1.0, 2.0], [0.1, 0.2, 0.3])
    assert tied.spearman == pytest.approx(0.866, abs=1e-3)  # ranks (0.5, 0.5, 2) against (0, 1, 2)


def test_group_agreement_needs_two_equal_lists():
    with pytest.raises(ValueError):
        group_agreement([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        group_agreement([1.0], [1.0])


def test_summary_averages_only_the_scored_groups():
    groups = [group_agreement([1, 2], [0.1, 0.3]), None, group_agreement([2, 1], [0.1, 0.3])]
    summary = summarize(groups)
    assert summary["groups"] == 3 and summary["groups_scored"] == 2
    assert summary["pearson"] == pytest.approx(0.0) and summary["best_gain"] == pytest.approx(0.1)


def test_a_grounder_that_sees_its_images_agrees_with_the_detector(records):
    model = DriftingModel(sees=True)
    metrics = evaluate_reward_alignment(model, records, group_size=4, seed=3)
    assert metrics["groups"] == metrics["groups_scored"] == len(records)
    assert metrics["pearson"] > 0.8 and metrics["spearman"] > 0.8
    assert metrics["pick_gain"] == pytest.approx(metrics["best_gain"]) and metrics["best_gain"] > 0.05
    assert [seed for name, seed in model.calls if name == "generate"] == [3 + 4 * i for i in range(len(records))]
    assert len(metrics["per_group"]) == len(records)


def test_a_grounder_that_trusts_the_prompt_gives_no_signal(records):
    metrics = evaluate_reward_alignment(DriftingModel(sees=False), records, group_size=4)
    assert metrics["groups_scored"] == 0 and metrics["mean_reward"] == pytest.approx(2.0)  # IoU 1 + (1 - L1 0)
    assert metrics["mean_fidelity"] < 0.9  # the images did drift: the reward just cannot tell


def test_reward_command_prints_a_table_and_keeps_groups_in_the_json(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_load_model", lambda args: DriftingModel())
    out = tmp_path / "reward.json"
    assert cli.main(["reward", "--data", str(data), "--max", "3", "--group-size", "3", "--out", str(out),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| reward metric | value |") and "| pearson |" in printed and "per_group" not in printed
    saved = json.loads(out.read_text())
    assert len(saved["per_group"]) == 3 and saved["run"]["group_size"] == 3 and saved["run"]["beams"] == 1


def test_a_group_of_one_is_an_input_error(data, capsys):
    assert cli.main(["reward", "--data", str(data), "--group-size", "1"]) == 2
    assert "--group-size must be at least 2" in capsys.readouterr().err
