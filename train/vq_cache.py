"""Pre-tokenized images: the VQ tokenizer is frozen, so every image is encoded once and cached.

The cache file is named by a fingerprint of what determines the tokens: the record ids and
image files, the image processor settings and the VQ weights. A changed data set or VQ gives
a new file; an unchanged one is read back in milliseconds on later runs.

    <cache_dir>/vq-<fingerprint>.safetensors   {"tokens": int32 [N, T]}, metadata {"ids": json}
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from model import generation
from train.data import Record, load_pixels

logger = logging.getLogger(__name__)


def vq_fingerprint(vqmodel) -> str:
    """Digest of the VQ weights (dtype-independent: hashed in float32)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(vqmodel.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(records: list[Record], image_processor, vq_digest: str) -> str:
    digest = hashlib.blake2b(digest_size=12)
    digest.update(vq_digest.encode())
    digest.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
    for record in records:
        stat = record.image.stat()
        digest.update(f"{record.id}\0{record.image}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@torch.no_grad()
def encode_images(model, image_processor, records: list[Record], batch_size: int = 4,
                  progress: bool = True) -> torch.Tensor:
    """VQ tokens [N, T] of the records' letterboxed images."""
    vq = model.model.vqmodel
    device, dtype = next(vq.parameters()).device, next(vq.parameters()).dtype
    out = []
    # A 20k-image split takes minutes on a CPU: show progress (not for the few images of tests).
    for start in tqdm(range(0, len(records), batch_size), desc="vq cache", unit="batch", leave=False,
                      disable=not progress or len(records) < 256):
        chunk = records[start:start + batch_size]
        pixels = load_pixels(image_processor, [r.image for r in chunk], device, dtype)  # [b, 3, S, S]
        out.append(generation.encode_image_tokens(model, pixels).to("cpu", torch.int32))  # [b, T]
    return torch.cat(out)


def load_or_encode(model, image_processor, records: list[Record], cache_dir: str | Path) -> torch.Tensor:
    """Tokens [N, T] (int64) for `records`, from the cache when it has them.

    Under several processes, call it inside `accelerator.main_process_first()`: the main
    process writes the file, the others read it."""
    cache_dir = Path(cache_dir)
    key = data_fingerprint(records, image_processor, vq_fingerprint(model.model.vqmodel))
    path = cache_dir / f"vq-{key}.safetensors"
    if path.is_file():
        tokens = load_file(path)["tokens"]
        logger.info("read %d cached image token rows from %s", tokens.shape[0], path)
    else:
        tokens = encode_images(model, image_processor, records)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"tokens": tokens.contiguous()}, str(tmp), metadata={"ids": json.dumps([r.id for r in records])})
        tmp.replace(path)  # atomic: a reader never sees half a file
        logger.info("encoded %d images into %s", len(records), path)
    if tokens.shape[0] != len(records):
        raise RuntimeError(f"VQ cache {path} has {tokens.shape[0]} rows for {len(records)} records")
    return tokens.long()
