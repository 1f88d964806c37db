"""The precomputed image head and embedding table against Janus' own modules."""

import pytest
import torch

from model.image_step import ImageEmbeddingTable, ImageHead
from model.matmul import half_matmul_available


def test_image_head_equals_the_generation_head(spread_echogen):
    model = spread_echogen.model
    head = ImageHead.for_model(model)
    assert isinstance(head, ImageHead)
    hidden = torch.randn(6, model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(head(hidden), model.model.generation_head(hidden), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not half_matmul_available(), reason="this torch build has no fbgemm fp16 GEMM")
def test_half_image_head_is_the_head_on_float16_rounded_weights(tiny_janus_dir):
    from model.echogen import EchoGen
    from model.tiny import spread_weights

    model = EchoGen.load(tiny_janus_dir, half_weights=False).model
    spread_weights(model)
    head = model.model.generation_head
    with torch.no_grad():
        for linear in (head.proj_out, head.vision_head):
            linear.weight.copy_(linear.weight.half().float())
    half = ImageHead.for_model(model, half=True)
    assert half is not ImageHead.for_model(model)  # one cached copy per precision
    hidden = torch.randn(6, model.config.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(half(hidden), head(hidden), rtol=1e-5, atol=1e-5)


def test_embedding_table_equals_the_aligned_embeddings(spread_echogen):
    model = spread_echogen.model
    table = ImageEmbeddingTable.for_model(model)
    assert isinstance(table, ImageEmbeddingTable)
    tokens = torch.tensor([0, 5, 5, model.model.generation_embeddings.num_embeddings - 1])
    with torch.no_grad():
        torch.testing.assert_close(table(tokens), model.prepare_embeddings_for_image_generation(tokens),
                                   rtol=1e-5, atol=1e-5)


def test_both_follow_in_place_weight_updates(tiny_janus_dir):
    from model.echogen import EchoGen

    model = EchoGen.load(tiny_janus_dir).model
    head, table = ImageHead.for_model(model), ImageEmbeddingTable.for_model(model)
    assert ImageHead.for_model(model) is head and ImageEmbeddingTable.for_model(model) is table  # reused
    with torch.no_grad():  # what optimizer steps do: in place
        model.model.generation_head.vision_head.weight.mul_(2.0)
        model.model.generation_aligner.fc1.weight.add_(1.0)
    new_head, new_table = ImageHead.for_model(model), ImageEmbeddingTable.for_model(model)
    assert new_head is not head and new_table is not table
    hidden, tokens = torch.randn(2, model.config.text_config.hidden_size), torch.tensor([1, 2])
    with torch.no_grad():
        torch.testing.assert_close(new_head(hidden), model.model.generation_head(hidden), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(new_table(tokens), model.prepare_embeddings_for_image_generation(tokens),
                                   rtol=1e-5, atol=1e-5)


def test_wrapped_modules_keep_their_own_forward(tiny_janus_dir):
    from peft import LoraConfig, get_peft_model

    from model.echogen import EchoGen

    model = EchoGen.load(tiny_janus_dir).model
    get_peft_model(model, LoraConfig(r=2, target_modules=["vision_head", "fc1"]))
    assert ImageHead.for_model(model) is model.model.generation_head
    assert not isinstance(ImageEmbeddingTable.for_model(model), ImageEmbeddingTable)
