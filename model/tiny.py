"""Small Janus configurations built from scratch: random test models and our own model's init.

`create_janus(path, spec)` writes a complete Hugging Face checkpoint (config, safetensors,
tokenizer, processor) that `model.loading.load_janus` reads back like any Janus-Pro.

Geometry: SigLIP sees `image_size / patch_size` patches per side, and transformers ties the
VQ latent grid to it (`vq_config.num_patches`), so one image is `(image_size / patch_size)^2`
tokens in both directions. The VQ decoder upsamples the grid by 2^(len(channel_multiplier)-1),
which must give back `image_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from transformers import JanusConfig, JanusForConditionalGeneration, JanusImageProcessorPil, JanusProcessor

from model.own_tokenizer import build_tokenizer

DEFAULT_CORPUS = (
    "a red circle and a blue square on a white background",
    "a green triangle in front of a yellow star",
    "Where is the object described by this phrase?",
)


@dataclass(frozen=True)
class JanusSpec:
    image_size: int = 32
    patch_size: int = 8
    hidden_size: int = 64  # language model width (also SigLIP projection and VQ image embeds)
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_layers: int = 1
    vision_heads: int = 2
    vq_channels: int = 32  # GroupNorm(32) inside the VQ needs multiples of 32
    vq_channel_multiplier: tuple[int, ...] = (1, 1, 2, 2)
    vq_res_blocks: int = 1
    codebook_size: int = 64
    codebook_dim: int = 8
    vocab_size: int = 2400
    max_positions: int = 1024
    corpus: tuple[str, ...] = field(default=DEFAULT_CORPUS, repr=False)

    def __post_init__(self):
        grid = self.image_size // self.patch_size
        if grid * self.patch_size != self.image_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if grid * 2 ** (len(self.vq_channel_multiplier) - 1) != self.image_size:
            raise ValueError(
                f"the VQ decoder makes {grid * 2 ** (len(self.vq_channel_multiplier) - 1)} px images from a "
                f"{grid}x{grid} grid, not {self.image_size}: adjust vq_channel_multiplier or patch_size"
            )

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def janus_config(spec: JanusSpec, vocab_size: int, pad_token_id: int, image_token_id: int) -> JanusConfig:
    text = {
        "model_type": "llama", "vocab_size": vocab_size, "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size, "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads, "num_key_value_heads": spec.num_heads,
        "max_position_embeddings": spec.max_positions, "pad_token_id": pad_token_id,
        "tie_word_embeddings": False,
    }
    vision = {
        "image_size": spec.image_size, "patch_size": spec.patch_size, "hidden_size": spec.vision_hidden_size,
        "num_hidden_layers": spec.vision_layers, "num_attention_heads": spec.vision_heads, "mlp_ratio": 2,
        "projection_dim": spec.hidden_size, "num_image_tokens": spec.num_image_tokens,
    }
    vq = {
        "embed_dim": spec.codebook_dim, "num_embeddings": spec.codebook_size, "latent_channels": spec.codebook_dim,
        "base_channels": spec.vq_channels, "channel_multiplier": list(spec.vq_channel_multiplier),
        "num_res_blocks": spec.vq_res_blocks, "projection_dim": spec.hidden_size,
        "image_token_embed_dim": spec.hidden_size,
    }
    return JanusConfig(
        text_config=text, vision_config=vision, vq_config=vq, image_token_id=image_token_id,
        tie_word_embeddings=False,
    )


def build_processor(spec: JanusSpec, corpus: Iterable[str] | None = None) -> JanusProcessor:
    tokenizer = build_tokenizer(corpus if corpus is not None else spec.corpus, vocab_size=spec.vocab_size)
    image_processor = JanusImageProcessorPil(
        size={"height": spec.image_size, "width": spec.image_size},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],  # SigLIP input in [-1, 1], like VQ output
    )
    return JanusProcessor(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=spec.num_image_tokens
    )


def create_janus(
    path: str | Path, spec: JanusSpec = JanusSpec(), seed: int = 0,
    corpus: Iterable[str] | None = None, vq_path: str | Path | None = None,
) -> Path:
    """Write a randomly initialized Janus checkpoint with our tokenizer to `path`.

    `corpus` trains the tokenizer (default: `spec.corpus`); `vq_path` is a trained
    `JanusVQVAE` directory whose weights replace the random VQ (its config must match `spec`)."""
    path = Path(path)
    processor = build_processor(spec, corpus)
    tokenizer = processor.tokenizer
    config = janus_config(
        spec, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
        image_token_id=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config)
    if vq_path is not None:
        from transformers import JanusVQVAE

        trained = JanusVQVAE.from_pretrained(vq_path, use_safetensors=True)
        model.model.vqmodel.load_state_dict(trained.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.generation_kwargs = {
        "boi_token_id": tokenizer.convert_tokens_to_ids(tokenizer.boi_token)
    }
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    processor.save_pretrained(path)
    return path


@torch.no_grad()
def spread_weights(model, seed: int = 0) -> None:
    """Re-draw the LM and generation-side weights with variance-preserving scale (std fan_in^-0.5).

    transformers' init (std 0.02) makes a tiny random model's logits nearly constant, so
    greedy decoding repeats one token; tests and benchmarks that compare token sequences
    need outputs that depend on the input."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if param.dim() > 1 and not name.startswith(("model.vqmodel.", "model.vision_model.")):
            param.copy_(torch.randn(param.shape, generator=generator) * param.shape[-1] ** -0.5)
