"""GRPO's math on tensors: group-normalized advantages, the KL estimator and the clipped loss.

Pure functions, no model: stage 3 (`train.cycle_rl`) feeds them per-token log-probs of the
sampled image tokens under the policy, the policy that sampled them, and the reference.
"""

from __future__ import annotations

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """[N * G] rewards, G consecutive per layout -> [N * G] advantages (r - group mean) / (group std + eps).

    scale=False keeps r - mean only (Dr. GRPO): groups with a small spread are not amplified."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.float().view(-1, group_size)  # [N, G]
    centered = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        std = groups.std(dim=1, keepdim=True, unbiased=False) if group_size > 1 else torch.zeros_like(centered)
        centered = centered / (std + eps)
    return centered.view(-1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) estimate exp(r - p) - (r - p) - 1 (>= 0, 0 iff equal)."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


def grpo_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, ref_logp: torch.Tensor | None = None,
    clip_eps: float = 0.2, beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped-ratio policy loss plus beta * KL, averaged over tokens then sequences.

    logp, old_logp, ref_logp: [B, T] log-probs of the sampled tokens (old and ref without grad);
    advantages: [B]. Returns (loss, detached stats: kl, clip_fraction, ratio)."""
    ratio = torch.exp(logp - old_logp)  # [B, T]
    adv = advantages.unsqueeze(1).to(logp.dtype)  # [B, 1]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    per_token = -surrogate
    kl = kl_k3(logp, ref_logp) if ref_logp is not None else torch.zeros_like(logp)
    if beta:
        per_token = per_token + beta * kl
    loss = per_token.mean(dim=1).mean()
    clipped = ((ratio < 1 - clip_eps) & (adv < 0)) | ((ratio > 1 + clip_eps) & (adv > 0))
    stats = {"kl": kl.mean().detach(), "clip_fraction": clipped.float().mean().detach(),
             "ratio": ratio.mean().detach()}
    return loss, stats
