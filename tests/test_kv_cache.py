"""The preallocated KV cache: beam reordering copies only what follows the shared prompt, with
the same result as reordering whole rows."""

import torch
from transformers.cache_utils import Cache, DynamicLayer

from model.kv_cache import preallocated_cache, reorder_hypotheses

ROWS, WIDTH, HEADS, PROMPT, ANSWER, DIM = 2, 3, 2, 5, 4, 8


def filled_cache(make):
    """A 2-layer cache of ROWS prompts x WIDTH hypotheses: the prompt part is the same for the
    hypotheses of one prompt, the answer part differs everywhere."""
    torch.manual_seed(0)
    cache = make()
    for layer in cache.layers:
        prompt_k = torch.randn(ROWS, HEADS, PROMPT, DIM).repeat_interleave(WIDTH, dim=0)
        prompt_v = torch.randn(ROWS, HEADS, PROMPT, DIM).repeat_interleave(WIDTH, dim=0)
        layer.update(prompt_k, prompt_v)
        layer.update(torch.randn(ROWS * WIDTH, HEADS, ANSWER, DIM), torch.randn(ROWS * WIDTH, HEADS, ANSWER, DIM))
    return cache


def test_reordering_after_the_prompt_equals_reordering_whole_rows():
    origin = torch.tensor([2, 2, 0, 4, 3, 3])  # within each prompt's hypotheses, as beam search picks them
    ours = filled_cache(lambda: preallocated_cache(2, PROMPT + ANSWER + 1))
    reference = filled_cache(lambda: Cache(layers=[DynamicLayer() for _ in range(2)]))
    reorder_hypotheses(ours, origin, shared_prefix=PROMPT)
    reference.batch_select_indices(origin)
    for mine, theirs in zip(ours.layers, reference.layers):
        assert torch.equal(mine.keys, theirs.keys) and torch.equal(mine.values, theirs.values)
    # and writing the next position still lands after the reordered answer
    ours.layers[0].update(torch.ones(ROWS * WIDTH, HEADS, 1, DIM), torch.ones(ROWS * WIDTH, HEADS, 1, DIM))
    assert ours.layers[0].keys.shape[2] == PROMPT + ANSWER + 1 and bool((ours.layers[0].keys[:, :, -1] == 1).all())


def test_reordering_a_dynamic_cache_falls_back_to_whole_rows():
    origin = torch.tensor([1, 1, 2, 3, 5, 5])
    cache = filled_cache(lambda: Cache(layers=[DynamicLayer() for _ in range(2)]))
    expected = [layer.keys[origin] for layer in cache.layers]
    reorder_hypotheses(cache, origin, shared_prefix=PROMPT)
    assert all(torch.equal(layer.keys, keys) for layer, keys in zip(cache.layers, expected))
