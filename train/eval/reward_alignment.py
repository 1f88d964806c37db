"""Does stage 3's reward rank a group's images the way the independent detector does?

Cycle RL (train.cycle_rl) learns only what its reward tells apart *within a group*: G images of
one layout, each advantage relative to the group's mean. So for each test layout this draws such
a group (the model's own sampling; image k of layout i with seed `seed + i * G + k`) and scores
every image twice:
- reward: stage 3's cycle reward (`train.rewards.cycle_rewards`, IoU + 1 - L1), the model
  grounding every phrase in its own image;
- fidelity: the detector (train.detector), per layout object the IoU of its matched detection
  when that detection's color and shape are right, else 0; mean over the layout's objects.
Per group: Pearson and Spearman correlation of the two, and how much fidelity picking the
reward's best image gains over the group mean (`pick_gain`) against picking the detector's
best (`best_gain`, the most any ranking could gain). Groups where either score is constant are
counted but not averaged (they give GRPO no signal, or nothing to find).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from model.layout import parse_layout
from train.eval.fidelity import object_fidelity
from train.rewards import cycle_rewards


@dataclass(frozen=True)
class GroupAgreement:
    pearson: float
    spearman: float
    pick_gain: float  # fidelity of the reward's best image minus the group's mean fidelity
    best_gain: float  # the same for the detector's own best image (the ceiling of pick_gain)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their mean rank."""
    order = values.argsort(kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def group_agreement(rewards: Sequence[float], fidelity: Sequence[float]) -> GroupAgreement | None:
    """How well one group's rewards order its images by fidelity; None if either is constant."""
    r, f = np.asarray(rewards, dtype=float), np.asarray(fidelity, dtype=float)
    if len(r) != len(f) or len(r) < 2:
        raise ValueError(f"need two equal lists of at least 2 scores, got {len(r)} and {len(f)}")
    if np.ptp(r) == 0 or np.ptp(f) == 0:
        return None
    return GroupAgreement(
        pearson=float(np.corrcoef(r, f)[0, 1]),
        spearman=float(np.corrcoef(_ranks(r), _ranks(f))[0, 1]),
        pick_gain=float(f[r.argmax()] - f.mean()),
        best_gain=float(f.max() - f.mean()),
    )


def summarize(groups: Sequence[GroupAgreement | None]) -> dict[str, Any]:
    """Means over the groups with both scores varying."""
    scored = [g for g in groups if g is not None]
    out: dict[str, Any] = {"groups": len(groups), "groups_scored": len(scored)}
    for key in ("pearson", "spearman", "pick_gain", "best_gain"):
        out[key] = float(np.mean([getattr(g, key) for g in scored])) if scored else 0.0
    return out


def evaluate_reward_alignment(model: Any, records: Sequence[dict[str, Any]], *, group_size: int = 8,
                              seed: int = 0, sampling: Any = None, progress: bool = False) -> dict[str, Any]:
    """Draw a group per record's layout with `model` (EchoGen API) and compare reward and fidelity."""
    if group_size < 2:
        raise ValueError(f"group size must be at least 2, got {group_size}")
    kwargs = {} if sampling is None else {"sampling": sampling}
    groups, rewards_all, fidelity_all = [], [], []
    for i, record in enumerate(tqdm(records, desc="groups", disable=not progress)):
        layout = parse_layout(record)
        images = [im.convert("RGB") for im in
                  model.generate([layout], num_images=group_size, seed=seed + i * group_size, **kwargs).images[0]]
        width, height = images[0].size
        drawn = layout.resized(width, height)
        found = model.ground(images, [drawn.phrases] * group_size)
        rewards = cycle_rewards([drawn.boxes] * group_size, [[g.box for g in f] for f in found],
                                [[g.valid for g in f] for f in found], [(width, height)] * group_size)
        fidelity = [object_fidelity(image, record) for image in images]
        groups.append(group_agreement(rewards, fidelity))
        rewards_all += rewards
        fidelity_all += fidelity
    pooled = float(np.corrcoef(rewards_all, fidelity_all)[0, 1]) if np.ptp(rewards_all) and np.ptp(fidelity_all) else 0.0
    return {**summarize(groups), "pooled_pearson": pooled, "mean_reward": float(np.mean(rewards_all)),
            "mean_fidelity": float(np.mean(fidelity_all)), "group_size": group_size,
            "per_group": [None if g is None else asdict(g) for g in groups]}
