"""Give a trained model another VQ decoder, keeping every code it draws.

The LM writes VQ codes; the decoder only turns them into pixels. A decoder trained further on
the same frozen encoder and codebook (`python -m train.vq --init VQ --decoder_steps N`) makes
the same codes into better pixels, so it can replace the model's own without any LM training.
This refuses a VQ whose encoder or codebook differ from the model's: there the LM's codes would
mean something else (that is `python -m model.regrid`'s job, followed by stage 1).

    python -m model.swap_decoder --model assets/echogen-shapes --vq runs/vq16d/vq --out runs/p23
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from model.regrid import VQ_ARCHITECTURE, RegridError

logger = logging.getLogger(__name__)

# What fixes an image's codes: these must match the model's exactly.
CODE_PREFIXES = ("encoder.", "quant_conv.", "quantize.")


def check_same_codes(model_vq, new_vq) -> None:
    """Raise RegridError unless `new_vq` encodes every image to the codes `model_vq` does."""
    for key in (*VQ_ARCHITECTURE, "num_patches"):
        mine, theirs = getattr(model_vq.config, key, None), getattr(new_vq.config, key, None)
        if mine != theirs:
            raise RegridError(f"the VQ's {key} is {theirs}, the model's {mine}: another architecture")
    new_state = new_vq.state_dict()
    for name, value in model_vq.state_dict().items():
        if name.startswith(CODE_PREFIXES) and not torch.equal(value, new_state[name].to(value.dtype)):
            raise RegridError(f"the VQ's {name} differs from the model's, so the LM's codes would change meaning; "
                              "train the decoder alone from the model's own VQ (python -m train.vq --init VQ "
                              "--steps 0 --decoder_steps N)")


def swap_decoder(src: str | Path, vq_dir: str | Path, dest: str | Path) -> Path:
    """Write `src` with the decoder of the VQ in `vq_dir` as a new checkpoint at `dest`."""
    from transformers import AutoProcessor, JanusVQVAE

    from model.loading import load_janus

    if not (Path(vq_dir) / "config.json").is_file():
        raise RegridError(f"no VQ at {vq_dir}: expected a JanusVQVAE dir with config.json (python -m train.vq writes OUT/vq)")
    model, processor = load_janus(src, device="cpu", dtype=torch.float32)
    try:
        vq = JanusVQVAE.from_pretrained(vq_dir, use_safetensors=True, local_files_only=True)
    except (OSError, ValueError) as err:
        raise RegridError(f"could not load a VQ from {vq_dir}: {str(err).splitlines()[0]}") from None
    check_same_codes(model.model.vqmodel, vq)
    model.model.vqmodel.load_state_dict(vq.state_dict())
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest, safe_serialization=True)
    processor.save_pretrained(dest)
    AutoProcessor.from_pretrained(dest)  # what was written loads
    logger.info("%s -> %s with the decoder of %s", src, dest, vq_dir)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.swap_decoder", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the trained checkpoint")
    parser.add_argument("--vq", required=True, help="a JanusVQVAE dir with the model's encoder and codebook "
                                                    "and a new decoder (python -m train.vq writes OUT/vq)")
    parser.add_argument("--out", required=True, help="where the new checkpoint goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from model.loading import ModelLoadError

    try:
        swap_decoder(args.model, args.vq, args.out)
    except (RegridError, ModelLoadError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
