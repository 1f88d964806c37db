"""Move a Janus checkpoint to another image-token grid, keeping what carries over.

transformers ties the VQ's latent grid to SigLIP's patch grid (`JanusConfig` sets the VQ's
`num_patches` to `image_size // patch_size`), so one image is grid x grid tokens both ways. A
finer grid (8 -> 16: 64 -> 256 tokens, how PREVIEW 12 became the built-in PREVIEW 13) changes:
- the VQ: replaced by one trained for that grid (`python -m train.vq`);
- the image-token side of the LM (generation embeddings, aligner and head): the new codes
  mean something else, so these start fresh;
- SigLIP's patch embedding (another patch size: fresh) and position table (resized bilinearly).
Everything else carries over unchanged: the LM layers, text embeddings and head, SigLIP's
layers, the understanding aligner, the tokenizer. What the LM knew of layouts and boxes stays;
the drawing is learned again (stage 1), and the encoder's patches want re-training first
(`python -m train.vision_pretrain`).

    python -m model.regrid --model assets/echogen-shapes --vq runs/vq16/vq --out runs/grid16/init
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Parameters that depend on the VQ's codes or on SigLIP's patch size: never copied.
FRESH_PREFIXES = (
    "model.vqmodel.", "model.generation_embeddings.", "model.generation_aligner.", "model.generation_head.",
    "model.vision_model.embeddings.patch_embedding.",
)
POSITION_TABLE = "model.vision_model.embeddings.position_embedding.weight"
VQ_ARCHITECTURE = ("embed_dim", "num_embeddings", "latent_channels", "base_channels", "channel_multiplier",
                   "num_res_blocks", "double_latent", "in_channels", "out_channels")  # not the LM-side aligner's depth


class RegridError(ValueError):
    """A VQ or grid that does not fit the checkpoint, with a message for the user."""


def resize_positions(table: torch.Tensor, grid: int) -> torch.Tensor:
    """[g*g, C] row-major patch positions -> [grid*grid, C], bilinear over the 2-D raster."""
    old = int(round(table.shape[0] ** 0.5))
    if old * old != table.shape[0]:
        raise RegridError(f"position table of {table.shape[0]} rows is not a square grid")
    raster = table.T.reshape(1, table.shape[1], old, old)  # [1, C, g, g]
    resized = F.interpolate(raster, size=(grid, grid), mode="bilinear", align_corners=False)
    return resized.reshape(table.shape[1], grid * grid).T.contiguous()  # [grid*grid, C]


def regrid_config(config, vq_config, max_positions: int | None = None):
    """A copy of `config` whose SigLIP grid matches `vq_config`'s latent grid."""
    from transformers import JanusConfig

    factor = 2 ** (len(vq_config.channel_multiplier) - 1)
    image_size = config.vision_config.image_size
    grid = vq_config.num_patches
    if grid * factor != image_size:
        raise RegridError(f"the VQ makes {grid * factor} px images from its {grid}x{grid} grid; "
                          f"the model's images are {image_size} px")
    data = config.to_dict()
    data["vision_config"].update(patch_size=image_size // grid, num_image_tokens=grid * grid)
    data["vq_config"].update({key: getattr(vq_config, key) for key in VQ_ARCHITECTURE})
    if max_positions is not None:
        text = data["text_config"]
        text["max_position_embeddings"] = max(text["max_position_embeddings"], max_positions)
    return JanusConfig.from_dict(data)


def regrid(src: str | Path, vq_dir: str | Path, dest: str | Path, max_positions: int | None = None,
           seed: int = 0) -> Path:
    """Write `src` moved to the grid of the trained VQ in `vq_dir` as a new checkpoint at `dest`."""
    from transformers import AutoProcessor, JanusForConditionalGeneration, JanusVQVAE

    from model.loading import load_janus

    old_model, processor = load_janus(src, device="cpu", dtype=torch.float32)
    vq = JanusVQVAE.from_pretrained(vq_dir, use_safetensors=True)
    config = regrid_config(old_model.config, vq.config, max_positions)
    grid = vq.config.num_patches
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).eval()
    state = model.state_dict()
    kept = fresh = 0
    for name, value in old_model.state_dict().items():
        if name == POSITION_TABLE:
            state[name] = resize_positions(value, grid)
        elif name.startswith(FRESH_PREFIXES) or name not in state:
            fresh += 1
            continue
        elif state[name].shape != value.shape:
            raise RegridError(f"{name}: {tuple(value.shape)} in the checkpoint, {tuple(state[name].shape)} after regrid")
        else:
            state[name] = value
        kept += 1
    model.load_state_dict(state)
    model.model.vqmodel.load_state_dict(vq.state_dict())
    model.generation_config = old_model.generation_config
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    processor.num_image_tokens = grid * grid
    processor.save_pretrained(dest)
    AutoProcessor.from_pretrained(dest)  # what was written loads
    logger.info("regrid %s -> %s: %dx%d grid, %d tensors kept, %d fresh", src, dest, grid, grid, kept, fresh)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.regrid", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the checkpoint to move")
    parser.add_argument("--vq", required=True, help="a trained JanusVQVAE dir (python -m train.vq writes OUT/vq)")
    parser.add_argument("--out", required=True, help="where the new checkpoint goes")
    parser.add_argument("--max-positions", type=int, default=None,
                        help="raise the LM's position limit to at least this (a 16x16 grid needs > 512)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from model.loading import ModelLoadError

    try:
        regrid(args.model, args.vq, args.out, args.max_positions)
    except (RegridError, ModelLoadError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
