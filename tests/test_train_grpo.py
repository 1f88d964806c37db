"""GRPO math on literal numbers: advantages, KL, the clipped loss and its gradients."""

import math

import pytest
import torch

from train.grpo import group_advantages, grpo_loss, kl_k3


def test_group_advantages_normalize_within_each_group():
    adv = group_advantages(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]), group_size=4)
    std = math.sqrt(1.25)  # population std of 1, 2, 3, 4
    expected = [-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std, 0, 0, 0, 0]
    assert adv.tolist() == pytest.approx(expected, abs=1e-3)


def test_unscaled_advantages_only_center():
    adv = group_advantages(torch.tensor([0.0, 1.0, 10.0, 30.0]), group_size=2, scale=False)
    assert adv.tolist() == pytest.approx([-0.5, 0.5, -10.0, 10.0])


def test_group_size_must_divide():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(5), group_size=2)


def test_kl_k3():
    p = torch.log(torch.tensor([0.5, 0.2]))
    assert kl_k3(p, p).tolist() == [0.0, 0.0]
    ref = torch.log(torch.tensor([0.25, 0.2]))
    # exp(r - p) - (r - p) - 1 with r - p = log 0.5
    assert kl_k3(p, ref)[0].item() == pytest.approx(0.5 - math.log(0.5) - 1)
    assert (kl_k3(p + 0.3, ref) >= 0).all()


def test_loss_at_ratio_one_is_minus_the_mean_advantage_and_its_gradient():
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.5, 0.5]])).requires_grad_()
    adv = torch.tensor([1.0, -3.0])
    loss, stats = grpo_loss(logp, logp.detach(), adv)
    assert loss.item() == pytest.approx(1.0)  # -(1 + -3) / 2
    loss.backward()
    # d/dlogp of -ratio * A averaged over T = 2 tokens and B = 2 rows: -A / 4
    assert logp.grad.flatten().tolist() == pytest.approx([-0.25, -0.25, 0.75, 0.75])
    assert stats["ratio"].item() == pytest.approx(1.0) and stats["clip_fraction"].item() == 0.0


def test_ratio_is_clipped_in_the_direction_of_the_advantage():
    old = torch.zeros(2, 1)
    logp = torch.log(torch.tensor([[1.5], [0.5]])).requires_grad_()  # ratios 1.5 and 0.5
    adv = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(logp, old, adv, clip_eps=0.2)
    # row 0: min(1.5, 1.2) * 1 = 1.2; row 1: min(-0.5, -0.8) = -0.8 -> loss = -(1.2 - 0.8) / 2
    assert loss.item() == pytest.approx(-0.2)
    loss.backward()
    assert logp.grad.abs().sum().item() == 0.0  # both rows clipped: no gradient
    assert stats["clip_fraction"].item() == 1.0


def test_unclipped_side_keeps_its_gradient():
    old = torch.zeros(1, 1)
    logp = torch.log(torch.tensor([[0.5]])).requires_grad_()  # ratio 0.5 with A > 0: not clipped
    loss, _ = grpo_loss(logp, old, torch.tensor([2.0]), clip_eps=0.2)
    assert loss.item() == pytest.approx(-1.0)
    loss.backward()
    assert logp.grad.item() == pytest.approx(-1.0)  # d(-ratio * A)/dlogp = -ratio * A


def test_kl_term_is_added_with_beta():
    logp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    zero_adv = torch.zeros(1)
    loss, stats = grpo_loss(logp, logp, zero_adv, ref, beta=0.1)
    assert stats["kl"].item() == pytest.approx(0.5 - math.log(0.5) - 1)
    assert loss.item() == pytest.approx(0.1 * stats["kl"].item())
    loss_no_ref, stats_no_ref = grpo_loss(logp, logp, zero_adv, None, beta=0.1)
    assert loss_no_ref.item() == 0.0 and stats_no_ref["kl"].item() == 0.0
