"""One decode step through Llama decoder layers with fused projections (inference only).

At decode time every matmul sees a handful of rows ([R, 1, D], R = 2 x batch with CFG), so a
step costs kernel launches and Python dispatch rather than FLOPs. Fusing q/k/v into one
matmul and gate/up into another, and using `F.rms_norm` and `F.scaled_dot_product_attention`
directly, cuts a layer from ~30 ops to ~15. The math is Llama's own (pre-norm, rotary, SiLU-
gated MLP); `FusedLayers.build` returns None for any layer that is not plain Llama (biases,
another activation, LoRA or quantized wrappers left unmerged), and callers then use the
layers' own forward.

The fused weights are copies, float32 or packed in float16 (`model.matmul`), so
`FusedLayers.for_lm` keeps one set per language model and precision and rebuilds it when any
weight changed in place (training steps bump the tensors' versions). It only fuses models up to
`MAX_FUSED_PARAMS` layer weights: for big models a step is matmul-bound, fusion gains little,
and a second copy of the weights would cost real memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.kv_cache import SharedPrefix
from model.matmul import Matmul

MAX_FUSED_PARAMS = 50_000_000


@dataclass
class _LayerWeights:
    input_norm: torch.Tensor  # [D]
    qkv: Matmul  # [D] -> [(H + 2 Hkv) d]
    o: Matmul  # [H d] -> [D]
    post_norm: torch.Tensor  # [D]
    gate_up: Matmul  # [D] -> [2 I]
    down: Matmul  # [I] -> [D]


def _plain_linear(module) -> bool:
    return type(module) is nn.Linear and module.bias is None


def cached_derivative(owner: nn.Module, attribute: str, params: list[torch.Tensor], build):
    """`build()`, kept on `owner` and rebuilt when any of `params` changed (in-place updates bump
    a tensor's version) or was replaced."""
    key = tuple((p.data_ptr(), p._version) for p in params)
    cached = getattr(owner, attribute, None)
    if cached is None or cached[0] != key:
        cached = (key, build())
        object.__setattr__(owner, attribute, cached)  # a plain attribute, not a submodule
    return cached[1]


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """Rotary's sin with its first half negated, so that `_rotate` needs no rotate_half (what
    `FusedLayers` takes in place of sin; callers compute it once for all steps)."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Llama's x * cos + rotate_half(x) * sin, bit for bit: rotate_half(x) * sin is
    [-x2, x1] * [s1, s2] = [x2, x1] * [-s1, s2], and [x2, x1] is one roll (4 ops instead of 7)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


def prefix_attention(q: torch.Tensor, prefix: SharedPrefix, keys: torch.Tensor, values: torch.Tensor,
                     mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Attention of one new position per row over its shared prefix, then its own keys.

    q [R, H, 1, d]; prefix keys / values [N, H, P, d], row r continuing prefix `prefix.index[r]`;
    keys / values [R, H, S, d], the rows' own; mask bool [R, 1, 1, P + S] or None (prefixes have
    no padding). Each prefix is read once per step for all of its rows. -> [R, H, 1, d]"""
    length = prefix.length
    own = (q @ keys.transpose(-1, -2)) * scale  # [R, H, 1, S]
    if mask is not None:
        own = own.masked_fill(~mask[..., length:], float("-inf"))
    shared = q.new_empty(*q.shape[:-1], length)  # [R, H, 1, P]
    for n, rows in prefix.groups:
        by_head = q[rows, :, 0].transpose(0, 1)  # [H, r, d]
        shared[rows] = (by_head @ prefix.keys[n].transpose(-1, -2)).transpose(0, 1).unsqueeze(2) * scale
    weights = torch.cat([shared, own], dim=-1).softmax(-1)  # [R, H, 1, P + S]
    out = weights[..., length:] @ values  # [R, H, 1, d]
    for n, rows in prefix.groups:
        by_head = weights[rows, :, 0, :length].transpose(0, 1)  # [H, r, P]
        out[rows] += (by_head @ prefix.values[n]).transpose(0, 1).unsqueeze(2)
    return out


class FusedLayers:
    def __init__(self, layers: list[_LayerWeights], heads: int, kv_heads: int, head_dim: int, eps: float, scale: float):
        self.layers, self.heads, self.kv_heads, self.head_dim = layers, heads, kv_heads, head_dim
        self.eps, self.scale = eps, scale

    @property
    def attends_shared_prefixes(self) -> bool:
        """Whether `prefix_attention` applies (it takes one key head per query head)."""
        return self.heads == self.kv_heads

    @classmethod
    def for_lm(cls, lm, half: bool = False) -> "FusedLayers | None":
        """The cached fused layers of `lm`, rebuilt after its weights changed; None when not fusable.

        half: weights packed in float16 (`model.matmul`; the caller checks `half_matmul_usable`)."""
        params = list(lm.layers.parameters()) if hasattr(lm, "layers") else []
        if not params or sum(p.numel() for p in params) > MAX_FUSED_PARAMS:
            return None
        attribute = "_echogen_fused_layers_half" if half else "_echogen_fused_layers"
        return cached_derivative(lm, attribute, params, lambda: cls.build(lm, half))

    @classmethod
    def build(cls, lm, half: bool = False) -> "FusedLayers | None":
        """Fused weights of `lm.layers` (copies: a few MB for small models), or None when not plain Llama."""
        if getattr(lm.config, "hidden_act", None) != "silu" or not len(lm.layers):
            return None
        weights = []
        for layer in lm.layers:
            attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
            projections = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
            projections += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
            if not all(_plain_linear(p) for p in projections):
                return None
            q, k, v, o, gate, up, down = (p.weight for p in projections)
            weights.append(_LayerWeights(
                layer.input_layernorm.weight.detach(), Matmul(q, k, v, half=half), Matmul(o, half=half),
                layer.post_attention_layernorm.weight.detach(), Matmul(gate, up, half=half), Matmul(down, half=half),
            ))
        first = lm.layers[0].self_attn
        heads = first.q_proj.out_features // first.head_dim
        kv_heads = first.k_proj.out_features // first.head_dim
        return cls(weights, heads, kv_heads, first.head_dim, lm.layers[0].input_layernorm.variance_epsilon,
                   first.scaling)

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor, cache,
                 mask: torch.Tensor | None) -> torch.Tensor:
        """hidden [R, 1, D] -> [R, 1, D] after all layers (before the final norm).

        cos, sin_signed (`signed_sin` of rotary's sin): [R, 1, d]; mask: bool [R, 1, 1, kv] or None; `cache` is updated in place."""
        rows, dim, d = hidden.shape[0], hidden.shape[-1], self.head_dim
        cos, sin = cos.unsqueeze(1), sin_signed.unsqueeze(1)  # [R, 1, 1, d]: broadcast over heads
        q_size, kv_size = self.heads * d, self.kv_heads * d
        for index, w in enumerate(self.layers):
            normed = F.rms_norm(hidden, (dim,), w.input_norm, self.eps)
            qk, v = w.qkv(normed).split((q_size + kv_size, kv_size), dim=-1)
            qk = _rotate(qk.view(rows, 1, self.heads + self.kv_heads, d).transpose(1, 2), cos, sin)  # [R, H+Hkv, 1, d]
            q, k = qk.split((self.heads, self.kv_heads), dim=1)  # [R, H, 1, d], [R, Hkv, 1, d]
            v = v.view(rows, 1, self.kv_heads, d).transpose(1, 2)
            layer = cache.layers[index]
            prefix = getattr(layer, "prefix", None)
            if prefix is None:
                k, v = layer.update(k, v)  # [R, Hkv, kv, d]
                attended = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=self.kv_heads != self.heads)
            else:  # a prefix shared by many rows, kept once (model.kv_cache.SharedPrefix)
                k, v = layer.append(k, v)  # [R, H, own, d]
                attended = prefix_attention(q, prefix, k, v, mask, self.scale)
            hidden = hidden + w.o(attended.transpose(1, 2).reshape(rows, 1, q_size))
            normed = F.rms_norm(hidden, (dim,), w.post_norm, self.eps)
            gate, up = w.gate_up(normed).chunk(2, dim=-1)
            hidden = hidden + w.down(F.silu(gate) * up)
        return hidden
