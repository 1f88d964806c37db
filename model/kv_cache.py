"""A KV cache that writes into buffers sized once, instead of growing by concatenation.

`DynamicCache` re-allocates every layer's keys and values at every step (torch.cat), which
is a visible share of a small model's decode time on CPU. Image generation knows its final
length up front (prompt + image tokens), so each layer allocates [R, H, max_len, d] at the
prefill and later steps copy one position in. Attention sees a view of the filled part, so
nothing attends to empty slots (unlike a static cache, which attends over max_len under a
mask).

Many rows can share one prefix (grounding: one image's prompt start under every phrase and
every beam of it). `share_prefix` keeps such prefixes once, [N, H, P, d], and each row only
its own positions after them; the fused decode step attends to both parts
(`model.fused_step.prefix_attention`) instead of reading a copy of the prefix per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    def __init__(self, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.length = 0  # positions filled, a shared prefix included
        self.prefix: SharedPrefix | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Append [R, H, n, d] keys and values; returns all of them so far, [R, H, length, d] (with a
        shared prefix: copied in front of each row's own, what transformers' attention expects)."""
        keys, values = self.append(key_states, value_states)
        if self.prefix is None:
            return keys, values
        return self.prefix.expand(keys, values)

    def append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append [R, H, n, d] keys and values; returns the rows' own ones so far (after any shared
        prefix), views [R, H, own length, d]."""
        n = key_states.shape[-2]
        if not self.is_initialized:
            self.dtype, self.device = key_states.dtype, key_states.device
            shape = (*key_states.shape[:-2], self.max_len, key_states.shape[-1])
            self.key_buffer = key_states.new_empty(shape)
            self.value_buffer = value_states.new_empty((*shape[:-1], value_states.shape[-1]))
            self.is_initialized = True
        if self.length + n > self.max_len:
            raise RuntimeError(f"KV cache full: {self.length} + {n} > {self.max_len}")
        own = self.length - self.prefix_length
        self.key_buffer[..., own:own + n, :].copy_(key_states)
        self.value_buffer[..., own:own + n, :].copy_(value_states)
        self.length += n
        self.keys = self.key_buffer[..., :own + n, :]
        self.values = self.value_buffer[..., :own + n, :]
        return self.keys, self.values

    @property
    def prefix_length(self) -> int:
        return 0 if self.prefix is None else self.prefix.length

    def share_prefix(self, index: torch.Tensor) -> None:
        """Everything cached so far ([N, H, P, d]) becomes a prefix shared by R new rows, row r
        continuing prefix index[r]; the rows' own buffers start empty after it."""
        if not self.is_initialized or self.prefix is not None:
            raise RuntimeError("share_prefix needs a filled cache without a shared prefix yet")
        self.prefix = SharedPrefix(self.keys.clone(), self.values.clone(), index)
        _, heads, _, key_dim = self.key_buffer.shape
        own_shape = (index.shape[0], heads, self.max_len - self.length)  # room for what follows the prefix
        self.key_buffer = self.key_buffer.new_empty((*own_shape, key_dim))
        self.value_buffer = self.value_buffer.new_empty((*own_shape, self.value_buffer.shape[-1]))
        self.keys, self.values = self.key_buffer[..., :0, :], self.value_buffer[..., :0, :]

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_len

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep (and repeat) rows: shared prompts are prefilled once, then fanned out."""
        if self.is_initialized:
            own = self.length - self.prefix_length
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self.keys = self.key_buffer[..., :own, :]
            self.values = self.value_buffer[..., :own, :]
        if self.prefix is not None:
            self.prefix = SharedPrefix(self.prefix.keys, self.prefix.values, self.prefix.index[indices])

    def reorder_from(self, indices: torch.Tensor, start: int) -> None:
        """Rows take the keys and values of rows `indices` at positions start.. only. Beam
        search reorders hypotheses of one prompt, whose first `start` positions (the prompt)
        are the same in every row it mixes, so only the answer so far needs copying."""
        start = max(start - self.prefix_length, 0)  # in the rows' own buffers
        own = self.length - self.prefix_length
        if self.is_initialized and own > start:
            for buffer in (self.key_buffer, self.value_buffer):
                part = buffer[..., start:own, :]  # [R, H, n, d], a view
                part.copy_(part[indices])


@dataclass(frozen=True)
class SharedPrefix:
    """Keys and values [N, H, P, d] of N prefixes; row r of the cache continues prefix index[r]."""

    keys: torch.Tensor
    values: torch.Tensor
    index: torch.Tensor  # [R]

    @property
    def length(self) -> int:
        return self.keys.shape[-2]

    @cached_property
    def groups(self) -> list[tuple[int, slice | torch.Tensor]]:
        """(prefix n, the rows continuing it): a slice where those rows are contiguous (the usual
        order: prompts by image, hypotheses by prompt), else their indices."""
        groups: list[tuple[int, slice | torch.Tensor]] = []
        for n in self.index.unique().tolist():
            rows = (self.index == n).nonzero().squeeze(1)
            first, last = int(rows[0]), int(rows[-1])
            groups.append((n, slice(first, last + 1) if last - first + 1 == rows.numel() else rows))
        return groups

    def expand(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows' own keys and values [R, H, S, d] -> with their prefix in front, [R, H, P + S, d] (copies)."""
        return (torch.cat([self.keys[self.index], keys], dim=-2),
                torch.cat([self.values[self.index], values], dim=-2))


def reorder_hypotheses(cache: Cache, indices: torch.Tensor, shared_prefix: int) -> None:
    """`cache.batch_select_indices(indices)` for a cache whose rows agree on their first
    `shared_prefix` positions wherever `indices` mixes them: copies only what follows."""
    for layer in cache.layers:
        if isinstance(layer, PreallocatedLayer):
            layer.reorder_from(indices, shared_prefix)
        else:
            layer.batch_select_indices(indices)


def preallocated_cache(num_layers: int, max_len: int) -> Cache:
    return Cache(layers=[PreallocatedLayer(max_len) for _ in range(num_layers)])


def share_prefix(cache: Cache, index: torch.Tensor) -> None:
    """What every layer of `cache` holds becomes a prefix shared by new rows (`PreallocatedLayer.share_prefix`)."""
    for layer in cache.layers:
        layer.share_prefix(index)
