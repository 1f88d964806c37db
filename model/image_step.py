"""The image-token head and next-token embedding of a decode step, precomputed for speed.

Per generated image token the loop maps the LM's hidden state to codebook logits (Janus'
`generation_head`: linear, GELU, linear) and the chosen token back to an LM input embedding
(`generation_embeddings` then `generation_aligner`: linear, GELU, linear). The embedding of a
token depends on nothing else, so all of them are computed once into a [V, D] table and a
step looks its tokens up; the head runs on weights stored input-major or packed in float16
(`model.matmul`). Both are cached on the model and rebuilt when its weights change.
Models whose modules are not the plain Janus ones (LoRA-wrapped, quantized) keep their own.
"""

from __future__ import annotations

import torch
from torch import nn

from model.fused_step import cached_derivative
from model.matmul import Matmul

MAX_COPIED_ELEMENTS = 8_000_000  # bigger heads and tables (Janus-Pro: 16384 x 2048) stay as they are


def _plain_linear_with_bias(module) -> bool:
    return type(module) is nn.Linear and module.bias is not None


class ImageHead:
    """hidden [R, D] -> codebook logits [R, V], as `generation_head` computes them."""

    def __init__(self, head, half: bool = False):
        self.proj_out = Matmul(head.proj_out.weight, bias=head.proj_out.bias, half=half)
        self.vision_head = Matmul(head.vision_head.weight, bias=head.vision_head.bias, half=half)
        self.activation = head.activation_fn

    @classmethod
    def for_model(cls, model, half: bool = False):
        """The cached head (half: weights packed in float16, `model.matmul`), or the model's own
        module when it is not the plain one."""
        head = model.model.generation_head
        parts = (getattr(head, "proj_out", None), getattr(head, "vision_head", None))
        if not all(_plain_linear_with_bias(p) for p in parts) or sum(
                p.numel() for p in head.parameters()) > MAX_COPIED_ELEMENTS:
            return head
        attribute = "_echogen_fast_head_half" if half else "_echogen_fast_head"
        return cached_derivative(head, attribute, list(head.parameters()), lambda: cls(head, half))

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.vision_head(self.activation(self.proj_out(hidden)))


class ImageEmbeddingTable:
    """tokens [R] -> LM input embeddings [R, D], looked up in a table of all V image tokens."""

    def __init__(self, model):
        with torch.no_grad():
            self.table = model.prepare_embeddings_for_image_generation(
                torch.arange(model.model.generation_embeddings.num_embeddings, device=model.device))  # [V, D]

    @classmethod
    def for_model(cls, model):
        embeddings, aligner = model.model.generation_embeddings, model.model.generation_aligner
        plain = type(embeddings) is nn.Embedding and all(
            _plain_linear_with_bias(m) for m in aligner.modules() if isinstance(m, nn.Linear))
        if not plain or embeddings.num_embeddings * model.config.text_config.hidden_size > MAX_COPIED_ELEMENTS:
            return model.prepare_embeddings_for_image_generation
        params = list(embeddings.parameters()) + list(aligner.parameters())
        return cached_derivative(aligner, "_echogen_embedding_table", params, lambda: cls(model))

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table[tokens]
