"""`python -m train.vq`: train the VQ image tokenizer (transformers' `JanusVQVAE`) on Shapes World.

Reconstruction (L1 + MSE) plus the usual codebook and commitment losses. Quantization is by
cosine similarity to an L2-normalized codebook (as LlamaGen does), which is exactly what
`JanusVQVAE.decode` assumes: it normalizes codebook rows after lookup. The saved codebook
rows are unit-norm, so `JanusVQVAE.encode`'s Euclidean nearest neighbour picks the same
codes as training did. Unused codes are restarted from recent encoder outputs.

Images are rendered on the fly (no data on disk), first as random crops (cheap: the VQ is
fully convolutional), then at full size. Checkpoints every `save_every` steps; `--resume`
continues from the last one. The result is `OUT/vq/` (config + safetensors) and
`OUT/vq_report.json` (reconstruction quality on the val split, codebook usage).

After the joint steps, `decoder_steps` more train only the decoder on frozen codes: the
encoder and codebook stay bit-identical, so an LM trained on this VQ's codes draws the same
tokens and only their pixels change (`python -m model.swap_decoder` puts such a decoder into a
trained model). `--init DIR` starts from a saved VQ, e.g. to polish a shipped model's decoder:

    python -m train.vq --config train/configs/shapes/vq.yaml --out runs/shapes   # overrides: --steps N ...
    python -m train.vq --config train/configs/shapes/vq_grid16.yaml --init assets/grid16-wip/vq \
        --steps 0 --full_size_steps 0 --decoder_steps 3000 --out runs/vq16d
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from train.config import ConfigError, load_config, option, run_cli

logger = logging.getLogger(__name__)


@dataclass
class VQTrainConfig:
    out: str = option("run dir: the VQ lands in OUT/vq, its report in OUT/vq_report.json", default="runs/shapes")
    steps: int = option("optimizer steps in all", default=2200)
    full_size_steps: int = option("the last steps train on whole images instead of crops", default=300)
    batch_size: int = option("images per step", default=16)
    crop: int = option("crop side of the first phase (a multiple of the downsampling factor)", default=64)
    image_size: int = option("image side", default=128)
    codebook_size: int = option("number of codes", default=1024)
    codebook_dim: int = option("code dimension (L2-normalized)", default=8)
    base_channels: int = option("VQ width, a multiple of 32 (GroupNorm has 32 groups); use >= 64: at 32 every "
                                "group is one channel and the decoder's last norm erases each image's colors",
                                default=64)
    channel_multiplier: list = option("width multipliers; 2^(len-1) is the downsampling factor",
                                      default_factory=lambda: [1, 1, 1, 1, 1])
    num_res_blocks: int = option("residual blocks per level (0 works when all multipliers are equal)", default=0)
    lr: float = option("peak learning rate (warm-up, then cosine to 10%)", default=6e-4)
    beta: float = option("commitment loss weight", default=0.25)
    fg_weight: float = option("extra reconstruction weight on shape pixels (see foreground_weights)", default=4.0)
    eval_every: int = option("steps between val reports (round-trip PSNR and detector fidelity); 0: at the end only",
                             default=0)
    decoder_steps: int = option("after `steps`, train only the decoder (and post-quant conv) this many steps on "
                                "frozen codes: the codes do not change, so an LM trained on them stays valid", default=0)
    decoder_full_size_steps: int = option("the last decoder-only steps train on whole images", default=0)
    decoder_lr: float = option("peak learning rate of the decoder-only steps (warm-up, then cosine to 10%)",
                               default=3e-4)
    init: str = option("start from this saved VQ (a `JanusVQVAE` directory) instead of fresh weights; its own "
                       "architecture is used", default="")
    eval_images: int = option("val renders in the report (and in each eval_every report)", default=64)
    restart_every: int = option("steps between dead-code restarts", default=100)
    save_every: int = option("steps between resumable checkpoints", default=250)
    seed: int = option("seed of the weights, the data and the crops", default=0)
    resume: bool = option("continue from OUT/vq_state when it exists", default=False)

    def __post_init__(self):
        factor = 2 ** (len(self.channel_multiplier) - 1)
        if self.crop % factor or self.image_size % factor:
            raise ConfigError(f"crop and image_size must be multiples of the VQ downsampling factor {factor}")
        if not 0 <= self.full_size_steps <= self.steps:
            raise ConfigError("full_size_steps must be in [0, steps]")
        if not 0 <= self.decoder_full_size_steps <= self.decoder_steps:
            raise ConfigError("decoder_full_size_steps must be in [0, decoder_steps]")
        if self.steps + self.decoder_steps <= 0:
            raise ConfigError("nothing to train: steps + decoder_steps must be positive")
        if self.base_channels % 32:
            raise ConfigError("base_channels must be a multiple of 32")
        if self.num_res_blocks == 0 and len(set(self.channel_multiplier)) > 1:
            raise ConfigError("num_res_blocks 0 needs equal channel multipliers (JanusVQVAE only changes width in blocks)")


@dataclass
class VQRun:
    vq: VQTrainConfig = field(default_factory=VQTrainConfig)


def vq_config(cfg: VQTrainConfig):
    from transformers import JanusVQVAEConfig

    factor = 2 ** (len(cfg.channel_multiplier) - 1)
    return JanusVQVAEConfig(
        embed_dim=cfg.codebook_dim, num_embeddings=cfg.codebook_size, latent_channels=cfg.codebook_dim,
        base_channels=cfg.base_channels, channel_multiplier=list(cfg.channel_multiplier),
        num_res_blocks=cfg.num_res_blocks, num_patches=cfg.image_size // factor,
    )


def render_examples(seed: int, split: str, start: int, n: int, size: int) -> tuple[torch.Tensor, list[dict]]:
    """Shapes World images start..start+n of a split: ([n, 3, size, size] in [-1, 1], their records)."""
    from train.shapes.world import SceneConfig
    from train.synth import make_example

    scene_cfg = SceneConfig(size=size)
    examples = [make_example(seed, split, start + i, scene_cfg) for i in range(n)]
    arrays = np.stack([np.asarray(image, dtype=np.float32) for _, _, image in examples])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1.0, [record for _, record, _ in examples]


def render_batch(seed: int, split: str, start: int, n: int, size: int) -> torch.Tensor:
    """[n, 3, size, size] Shapes World renders in [-1, 1] (images start..start+n of the split)."""
    return render_examples(seed, split, start, n, size)[0]


def foreground_weights(pixels: torch.Tensor, weight: float) -> torch.Tensor:
    """[B, 1, H, W] loss weights, 1 + weight on shape pixels (saturated or dark; backgrounds are light and greyish).

    Shapes cover a small share of each image, so an unweighted loss learns the background and
    luminance first and the shapes' hues last; this moves attention to where the colors are."""
    rgb = (pixels + 1) / 2
    value, low = rgb.amax(dim=1, keepdim=True), rgb.amin(dim=1, keepdim=True)
    salience = torch.maximum(value - low, 1 - value).clamp(0, 1)  # chroma, or darkness for black shapes
    return 1 + weight * salience


def random_crops(images: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    if crop >= images.shape[-1]:
        return images
    n, limit = images.shape[0], images.shape[-1] - crop + 1
    xs = torch.randint(0, limit, (n,), generator=generator)
    ys = torch.randint(0, limit, (n,), generator=generator)
    return torch.stack([img[:, y:y + crop, x:x + crop] for img, x, y in zip(images, xs, ys)])


def quantize(vq, pixels: torch.Tensor):
    """Encoder -> cosine-nearest unit codes. Returns (quantized latents ST, codes, codebook loss)."""
    z = F.normalize(vq.quant_conv(vq.encoder(pixels)), dim=1)  # [B, C, h, w]
    codebook = F.normalize(vq.quantize.embedding.weight, dim=1)  # [K, C]
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # [B*h*w, C]
    codes = (flat @ codebook.T).argmax(-1)
    chosen = codebook[codes].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    return z + (chosen - z).detach(), codes, z, chosen


def vq_losses(vq, pixels: torch.Tensor, beta: float, fg_weight: float = 0.0):
    quant, codes, z, chosen = quantize(vq, pixels)
    recon = vq.decoder(vq.post_quant_conv(quant))
    weights = foreground_weights(pixels, fg_weight)
    error = recon - pixels
    rec = ((error.abs() + error.square()) * weights).mean() / weights.mean()
    codebook = F.mse_loss(chosen, z.detach()) + beta * F.mse_loss(z, chosen.detach())
    return rec + codebook, rec, codes, z, recon


@torch.no_grad()
def restart_dead_codes(vq, usage: torch.Tensor, z: torch.Tensor, generator: torch.Generator) -> int:
    """Point unused codebook rows at random recent encoder outputs; returns how many moved."""
    dead = (usage == 0).nonzero().squeeze(-1)
    if dead.numel() == 0:
        return 0
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    picks = torch.randint(0, flat.shape[0], (dead.numel(),), generator=generator)
    vq.quantize.embedding.weight[dead] = flat[picks] + 0.01 * torch.randn(dead.numel(), flat.shape[1], generator=generator)
    return int(dead.numel())


@torch.no_grad()
def evaluate(vq, cfg: VQTrainConfig) -> dict:
    """Reconstruction through the real `encode`/`decode` path on val renders, and the detector's
    fidelity scores of those round trips: the ceiling of any image the LM can write with these codes."""
    from PIL import Image

    from train.eval.fidelity import score_images

    n = cfg.eval_images
    vq.eval()
    pixels, records = render_examples(cfg.seed, "val", 0, n, cfg.image_size)
    tokens = vq.encode(pixels).image_tokens.view(n, -1)
    recon = vq.decode(tokens).clamp(-1, 1)
    mse = F.mse_loss((recon + 1) / 2, (pixels + 1) / 2).item()
    vq.train()
    arrays = ((recon + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    fidelity = score_images([Image.fromarray(a) for a in arrays], records)
    return {
        "round_trip_fidelity": {k: fidelity[k] for k in ("AP", "AP50", "presence", "color", "shape") if k in fidelity},
        "val_images": n, "psnr_db": 10 * math.log10(1.0 / max(mse, 1e-12)),
        "mae_0_255": F.l1_loss(recon, pixels).item() * 127.5,
        "codes_used_val": int(tokens.unique().numel()), "codebook_size": vq.config.num_embeddings,
    }


def load_vq(path: str | Path):
    """A saved `JanusVQVAE` (config.json + safetensors), with a clear error for anything else."""
    from transformers import JanusVQVAE

    path = Path(path)
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"--init {path}: no config.json there (expected a saved VQ, e.g. RUN/vq)")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type != "janus_vqgan":
        raise ConfigError(f"--init {path}: a {model_type!r} checkpoint, not a VQ (model_type 'janus_vqgan')")
    return JanusVQVAE.from_pretrained(path)


def decoder_parameters(vq) -> list[torch.nn.Parameter]:
    """What the decoder-only steps train: everything after the codebook lookup."""
    return [*vq.post_quant_conv.parameters(), *vq.decoder.parameters()]


def freeze_codes(vq) -> None:
    """Stop gradients into the encoder and codebook, so every image keeps its codes."""
    trainable = {id(p) for p in decoder_parameters(vq)}
    for param in vq.parameters():
        param.requires_grad_(id(param) in trainable)


def learning_rate(peak: float, step: int, steps: int) -> float:
    """100 warm-up steps, then cosine from `peak` to 10% of it over `steps`."""
    return peak * min(1.0, (step + 1) / 100) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)


def normalize_codebook(vq) -> None:
    """Unit codebook rows. A codebook that is already unit-norm stays bit-identical (renormalizing
    moves the last bits), so decoder-only runs keep the codes a trained LM knows."""
    with torch.no_grad():
        weight = vq.quantize.embedding.weight
        if not torch.allclose(weight.norm(dim=1), torch.ones(weight.shape[0]), atol=1e-5):
            weight.copy_(F.normalize(weight, dim=1))


def save_vq(vq, path: Path) -> None:
    normalize_codebook(vq)  # unit rows: encode's Euclidean argmin == training's cosine argmax
    vq.save_pretrained(path, safe_serialization=True)


def main(run: VQRun) -> dict:
    from transformers import JanusVQVAE

    cfg = run.vq

    torch.manual_seed(cfg.seed)
    vq = (load_vq(cfg.init) if cfg.init else JanusVQVAE(vq_config(cfg))).train()
    out = Path(cfg.out)
    state_dir = out / "vq_state"
    state_dir.mkdir(parents=True, exist_ok=True)
    (out / "vq_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    optimizer = torch.optim.AdamW(vq.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    decoder_optimizer = torch.optim.AdamW(decoder_parameters(vq), lr=cfg.decoder_lr, betas=(0.9, 0.95), weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    step = first_step = 0
    if cfg.resume and (state_dir / "state.pt").is_file():
        vq.load_state_dict(load_file(state_dir / "vq.safetensors"))
        state = torch.load(state_dir / "state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        if "decoder_optimizer" in state:
            decoder_optimizer.load_state_dict(state["decoder_optimizer"])
        generator.set_state(state["generator"])
        step = first_step = state["step"]
        logger.info("resumed at step %d", step)
    total = cfg.steps + cfg.decoder_steps
    usage = torch.zeros(vq.config.num_embeddings, dtype=torch.long)
    bar = tqdm(total=total, initial=step, desc="vq")
    start = time.perf_counter()
    while step < total:
        decoder_only = step >= cfg.steps
        if decoder_only:
            freeze_codes(vq)
            full = step >= total - cfg.decoder_full_size_steps
            opt, lr = decoder_optimizer, learning_rate(cfg.decoder_lr, step - cfg.steps, cfg.decoder_steps)
        else:
            full = step >= cfg.steps - cfg.full_size_steps
            opt, lr = optimizer, learning_rate(cfg.lr, step, cfg.steps)
        images = render_batch(cfg.seed, "train", step * cfg.batch_size, cfg.batch_size, cfg.image_size)
        pixels = images if full else random_crops(images, cfg.crop, generator)
        for group in opt.param_groups:
            group["lr"] = lr
        loss, rec, codes, z, _ = vq_losses(vq, pixels, cfg.beta, cfg.fg_weight)
        if decoder_only:
            loss = rec  # the codebook terms are constants here
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        usage += torch.bincount(codes, minlength=usage.numel())
        step += 1
        if not decoder_only and step % cfg.restart_every == 0 and step < cfg.steps - cfg.full_size_steps // 2:
            moved = restart_dead_codes(vq, usage, z, generator)
            logger.info("step %d: restarted %d dead codes", step, moved)
            usage.zero_()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", rec=f"{rec.item():.4f}", full=full, decoder_only=decoder_only)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
            normalize_codebook(vq)
            logger.info("step %d val: %s", step, json.dumps(evaluate(vq, cfg)))
        if step % cfg.save_every == 0 or step == total:
            save_file(vq.state_dict(), state_dir / "vq.safetensors")
            torch.save({"optimizer": optimizer.state_dict(), "decoder_optimizer": decoder_optimizer.state_dict(),
                        "generator": generator.get_state(), "step": step}, state_dir / "state.pt")
    bar.close()
    save_vq(vq, out / "vq")
    report = {"steps": cfg.steps, "decoder_steps": cfg.decoder_steps, "steps_this_run": total - first_step,
              "train_seconds_this_run": time.perf_counter() - start, **evaluate(vq, cfg)}
    (out / "vq_report.json").write_text(json.dumps(report, indent=2))
    logger.info("VQ report: %s", report)
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_cli(lambda run: print(json.dumps(main(run))), VQRun, sys.argv[1:])
