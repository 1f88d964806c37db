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


def test_a_shared_prefix_reads_as_the_copied_one():
    """Prefixes kept once (share_prefix) against the same prefixes copied to every row: what
    attention sees after fan-out, a new position and a beam reordering is the same."""
    from model.kv_cache import share_prefix

    torch.manual_seed(0)
    prefix_k, prefix_v = torch.randn(2, HEADS, PROMPT, DIM), torch.randn(2, HEADS, PROMPT, DIM)  # 2 images
    index = torch.tensor([0, 0, 1])  # three prompts: two on image 0, one on image 1
    shared, copied = preallocated_cache(1, PROMPT + ANSWER + 2), preallocated_cache(1, PROMPT + ANSWER + 2)
    for cache in (shared, copied):
        cache.layers[0].update(prefix_k, prefix_v)
    share_prefix(shared, index)
    copied.batch_select_indices(index)
    prompt_k, prompt_v = torch.randn(3, HEADS, ANSWER, DIM), torch.randn(3, HEADS, ANSWER, DIM)
    for mine, theirs in zip(shared.layers[0].update(prompt_k, prompt_v), copied.layers[0].update(prompt_k, prompt_v)):
        assert torch.equal(mine, theirs)  # what transformers' attention gets: prefix in front
    fan_out, origin = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([1, 1, 2, 3, 5, 4])
    for cache in (shared, copied):
        cache.batch_select_indices(fan_out)
        cache.layers[0].update(torch.randn(6, HEADS, 1, DIM, generator=torch.Generator().manual_seed(1)),
                               torch.randn(6, HEADS, 1, DIM, generator=torch.Generator().manual_seed(2)))
        reorder_hypotheses(cache, origin, shared_prefix=PROMPT + ANSWER)
    layer = shared.layers[0]
    assert layer.get_seq_length() == copied.layers[0].get_seq_length() == PROMPT + ANSWER + 1
    assert layer.keys.shape[2] == ANSWER + 1  # only the rows' own positions are stored per row
    expected = (copied.layers[0].keys, copied.layers[0].values)
    for mine, theirs in zip(layer.prefix.expand(layer.keys, layer.values), expected):
        assert torch.equal(mine, theirs)


def test_prefix_attention_equals_attention_over_copied_prefixes():
    import torch.nn.functional as F

    from model.fused_step import prefix_attention
    from model.kv_cache import SharedPrefix

    torch.manual_seed(0)
    prefix = SharedPrefix(torch.randn(2, HEADS, PROMPT, DIM), torch.randn(2, HEADS, PROMPT, DIM),
                          torch.tensor([1, 0, 0, 1]))  # rows of prefix 1 not contiguous: indexed, not sliced
    q = torch.randn(4, HEADS, 1, DIM)
    keys, values = torch.randn(4, HEADS, ANSWER, DIM), torch.randn(4, HEADS, ANSWER, DIM)
    mask = torch.ones(4, 1, 1, PROMPT + ANSWER, dtype=torch.bool)
    mask[0, ..., PROMPT] = mask[2, ..., PROMPT:PROMPT + 2] = False  # left padding of shorter prompts
    full_k, full_v = prefix.expand(keys, values)
    for m in (mask, None):
        expected = F.scaled_dot_product_attention(q, full_k, full_v, attn_mask=m, scale=0.3)
        torch.testing.assert_close(prefix_attention(q, prefix, keys, values, m, 0.3), expected, rtol=1e-5, atol=1e-6)
