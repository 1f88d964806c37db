"""A KV cache that writes into buffers sized once, instead of growing by concatenation.

`DynamicCache` re-allocates every layer's keys and values at every step (torch.cat), which
is a visible share of a small model's decode time on CPU. Image generation knows its final
length up front (prompt + image tokens), so each layer allocates [R, H, max_len, d] at the
prefill and later steps copy one position in. Attention sees a view of the filled part, so
nothing attends to empty slots (unlike a static cache, which attends over max_len under a
mask).
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class PreallocatedLayer(DynamicLayer):
    def __init__(self, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        # key_states, value_states: [R, H, n, d]
        n = key_states.shape[-2]
        if not self.is_initialized:
            self.dtype, self.device = key_states.dtype, key_states.device
            shape = (*key_states.shape[:-2], self.max_len, key_states.shape[-1])
            self.key_buffer = key_states.new_empty(shape)
            self.value_buffer = value_states.new_empty((*shape[:-1], value_states.shape[-1]))
            self.is_initialized = True
        if self.length + n > self.max_len:
            raise RuntimeError(f"KV cache full: {self.length} + {n} > {self.max_len}")
        self.key_buffer[..., self.length:self.length + n, :].copy_(key_states)
        self.value_buffer[..., self.length:self.length + n, :].copy_(value_states)
        self.length += n
        self.keys = self.key_buffer[..., :self.length, :]
        self.values = self.value_buffer[..., :self.length, :]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.max_len

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep (and repeat) rows: shared prompts are prefilled once, then fanned out."""
        if self.is_initialized:
            self.key_buffer = self.key_buffer[indices]
            self.value_buffer = self.value_buffer[indices]
            self.keys = self.key_buffer[..., :self.length, :]
            self.values = self.value_buffer[..., :self.length, :]

    def reorder_from(self, indices: torch.Tensor, start: int) -> None:
        """Rows take the keys and values of rows `indices` at positions start.. only. Beam
        search reorders hypotheses of one prompt, whose first `start` positions (the prompt)
        are the same in every row it mixes, so only the answer so far needs copying."""
        if self.is_initialized and self.length > start:
            for buffer in (self.key_buffer, self.value_buffer):
                part = buffer[..., start:self.length, :]  # [R, H, n, d], a view
                part.copy_(part[indices])


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
