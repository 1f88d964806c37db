"""`python -m train.recipes.shapes`: build an EchoGen-Shapes model end to end, resumably.

The shipped built-in model came out of a lineage of such runs (`--regrid`, many `--continue`
runs of stage 1, the VQ decoder polished, then stages 2 and 3): its lab notes
(assets/echogen-shapes/LAB_NOTES.md), "How it was made", list every command. The defaults below are sized for a short CPU run.

    python -m train.recipes.shapes --out runs/shapes                 # everything, resumable
    python -m train.recipes.shapes --out runs/shapes --until pmtp    # stop after stage 1
    python -m train.recipes.shapes --out runs/shapes --export assets/echogen-shapes

Steps, each skipped when its result exists (so rerunning the command resumes; the training
stages themselves resume from their last `checkpoint-{step}`):
  data   Shapes World train/val/test renders (python -m train.synth), and the color_pairs
         split drawn from train (python -m train.shapes.color_pairs)
  vq     the VQ tokenizer (python -m train.vq, train/configs/shapes/vq.yaml; vq_grid16.yaml with --grid 16)
  init   random Janus + trained VQ + Shapes tokenizer (train.recipes.shapes_init)
  vision the understanding encoder pre-trained on dense Shapes World targets (python -m
         train.vision_pretrain): what Janus-Pro's pre-trained SigLIP brings; not in the paper
  pmtp   stage 1, full training from scratch   (train/configs/shapes/pmtp.yaml)
  djo    stage 2                               (train/configs/shapes/djo.yaml)
  rl     stage 3, Cycle RL                     (train/configs/shapes/cycle_rl.yaml)
`--warm-start DIR` continues from an earlier built-in model instead: the vq and init steps are
skipped (DIR has its VQ), the vision step pre-trains DIR's encoder, and stage 1 starts from
that with train/configs/shapes/pmtp_warm.yaml. `--continue DIR` skips the vision step too:
stage 1 goes on from DIR as it is, with train/configs/shapes/pmtp_continue.yaml.
Extra `--set section.field=value` overrides go to every training stage (e.g. a shorter
`train.max_steps` for a quick preview); `--set STAGE:section.field=value` (STAGE pmtp, djo or
rl) to that stage only (e.g. `--set pmtp:train.max_steps=4500` for a longer stage 1).
`--export DIR` copies the last finished stage's model and writes SHAPES_SAMPLING into its
generation_config.json as its sampling defaults. `--grid 16` builds the 256-token
architecture of the shipped model since PREVIEW 13 (8 px VQ cells and SigLIP patches) instead
of the 64-token one of the models up to PREVIEW 12; it only changes the vq and init steps (its
VQ trains the decoder alone on the frozen codes after the joint steps, `decoder_steps`). With `--regrid DIR` the init step moves the earlier built-in
model DIR to that grid (`model.regrid`: its LM, text side and SigLIP layers kept, the VQ and
the image-token side new) instead of starting from random weights, and stage 1 runs
train/configs/shapes/pmtp_regrid.yaml.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from train.config import load_config

logger = logging.getLogger(__name__)
STEPS = ("data", "vq", "init", "vision", "pmtp", "djo", "rl")
STAGES = {  # step -> (module, config, previous model dir relative to out)
    "pmtp": ("train.pmtp", "train/configs/shapes/pmtp.yaml", "vision"),
    "djo": ("train.djo", "train/configs/shapes/djo.yaml", "pmtp/final/model"),
    "rl": ("train.cycle_rl", "train/configs/shapes/cycle_rl.yaml", "djo/final/model"),
}
ROOT = Path(__file__).resolve().parents[2]
# The built-in model's sampling defaults (EchoGen.sampling), picked on the val split: PREVIEW 18,
# 100 val layouts, seed 0 (`python -m train.eval fidelity --split val --max 100 --cfg C --temperature T`):
# AP 0.383 at Janus-Pro's CFG 5 / temperature 1; 0.398 (5 / 0.9), 0.407 (5 / 0.8), 0.417 (5 / 0.7), 0.416 (5 / 0.5),
# 0.412 (3 / 1), 0.433 (3 / 0.5), 0.440 (3 / 0.7), 0.416 (2 / 0.7), 0.409 (4 / 0.7), 0.387 (7 / 0.7),
# 0.365 (7 / 1). PREVIEW 20, same layouts: 0.514 (3 / 0.7), 0.525 (3 / 0.5), 0.496 (4 / 0.7), 0.509 (5 / 1),
# all within the noise of 100 layouts, so they were kept.
SHAPES_CFG, SHAPES_TEMPERATURE = 3.0, 0.7


def run_data(out: Path, data: Path, n_train: int) -> None:
    from train.shapes.world import SceneConfig
    from train.synth import write_split

    from train.shapes.color_pairs import write_color_pairs

    for split, n in (("train", n_train), ("val", 300), ("test", 500)):
        if not (data / f"{split}.jsonl").is_file():
            write_split(data, split, n, seed=0, cfg=SceneConfig(size=128))
    if not (data / "color_pairs.jsonl").is_file():  # for `--set pmtp:data.train_split=color_pairs`
        write_color_pairs(data, "train", "color_pairs")


def run_vq(out: Path, vq_steps: int | None, grid: int = 8) -> None:
    from train import vq
    from train.recipes.shapes_init import GRIDS

    if (out / "vq" / "config.json").is_file():
        return
    steps = [] if vq_steps is None else ["--steps", str(vq_steps)]
    vq.main(load_config(vq.VQRun, ["--config", str(ROOT / GRIDS[grid][1]), "--out", str(out), *steps, "--resume"]))


def run_init(out: Path, grid: int = 8, regrid_from: Path | None = None) -> None:
    from train.recipes.shapes_init import GRIDS, init_model

    if (out / "init" / "config.json").is_file():
        return
    spec = GRIDS[grid][0]
    if regrid_from is None:
        init_model(out / "init", out / "vq", spec=spec)
    else:
        from model.regrid import regrid

        regrid(regrid_from, out / "vq", out / "init", max_positions=spec.max_positions)


def run_vision(out: Path, start: Path) -> None:
    from train import vision_pretrain

    if (out / "vision" / "config.json").is_file():
        return
    vision_pretrain.main(load_config(vision_pretrain.VisionPretrainRun, [
        "--config", str(ROOT / "train/configs/shapes/vision.yaml"), "--vision.model", str(start),
        "--vision.out", str(out / "vision"), "--vision.resume", "true"]))


def stage_overrides(sets: list[str], step: str) -> list[str]:
    """The `--set` values one stage gets: plain ones reach every stage, `STAGE:...` only that one."""
    chosen = []
    for value in sets:
        stage, sep, rest = value.partition(":")
        if sep and stage in STAGES:
            if stage == step:
                chosen.append(rest)
        else:
            chosen.append(value)
    return chosen


def stage_dir(out: Path, step: str) -> Path:
    return out / {"pmtp": "pmtp", "djo": "djo", "rl": "cycle_rl"}[step]


def run_stage(out: Path, data: Path, step: str, overrides: list[str],
              stage1: tuple[str, Path] | None = None) -> None:
    """Run one training stage; `stage1` = (config, start model) replaces stage 1's defaults."""
    import importlib

    module_name, config, previous = STAGES[step]
    if (stage_dir(out, step) / "final" / "model" / "config.json").is_file():
        return
    start = out / previous
    if step == "pmtp" and stage1 is not None:
        config, start = stage1
    module = importlib.import_module(module_name)
    run_cls = next(v for k, v in vars(module).items() if k.endswith("Run") and isinstance(v, type))
    argv = ["--config", str(ROOT / config), "--model.path", str(start),
            "--data.data_dir", str(data), "--train.output_dir", str(stage_dir(out, step)),
            "--train.resume", "latest", *[f"--{o}" for o in stage_overrides(overrides, step)]]
    module.main(load_config(run_cls, argv))


def last_model(out: Path) -> Path:
    for step in reversed(("pmtp", "djo", "rl")):
        model = stage_dir(out, step) / "final" / "model"
        if (model / "config.json").is_file():
            return model
    raise SystemExit(f"error: no finished stage under {out}")


def export(model_dir: Path, dest: Path) -> None:
    """Copy a finished model (config, safetensors, tokenizer, processor) to `dest`, with the
    built-in model's sampling defaults."""
    from model.loading import save_sampling_defaults
    from model.results import SamplingConfig

    dest.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.suffix in (".json", ".safetensors", ".txt", ".jinja"):
            shutil.copy2(f, dest / f.name)
    save_sampling_defaults(dest, SamplingConfig(cfg=SHAPES_CFG, temperature=SHAPES_TEMPERATURE))
    logger.info("exported %s -> %s", model_dir, dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.recipes.shapes", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/shapes", help="run dir (default: runs/shapes)")
    parser.add_argument("--data", default="data/shapes", help="Shapes World data dir (default: data/shapes)")
    parser.add_argument("--n-train", type=int, default=20000, help="training images to render")
    parser.add_argument("--vq-steps", type=int, default=None,
                        help="VQ training steps (default: train/configs/shapes/vq.yaml)")
    parser.add_argument("--grid", type=int, choices=(8, 16), default=8,
                        help="image tokens per side of a model built from scratch: 8 (64 tokens, the models up "
                             "to PREVIEW 12) or 16 (256 tokens, the shipped model's; train/recipes/shapes_init.py)")
    parser.add_argument("--regrid", default=None, metavar="DIR",
                        help="with --grid: the init step moves this earlier built-in model to the grid (model.regrid)")
    parser.add_argument("--until", choices=STEPS, default="rl", help="last step to run")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override for every training stage, or STAGE:SECTION.FIELD=VALUE for one (repeatable)")
    parser.add_argument("--export", default=None, help="copy the last finished model to this dir")
    parser.add_argument("--warm-start", default=None, metavar="DIR",
                        help="start stage 1 from this earlier built-in model (skips vq and init)")
    parser.add_argument("--continue", dest="continue_from", default=None, metavar="DIR",
                        help="go on training this earlier built-in model in stage 1 (skips vq, init and vision)")
    args = parser.parse_args(argv)
    if args.warm_start and args.continue_from:
        parser.error("give --warm-start or --continue, not both")
    if args.grid != 8 and (args.warm_start or args.continue_from):
        parser.error("--grid builds a new model; an earlier model keeps its own grid (move it with --regrid)")
    if args.regrid and (args.grid == 8 or args.warm_start or args.continue_from):
        parser.error("--regrid needs --grid 16 and no --warm-start or --continue")
    earlier = args.warm_start or args.continue_from
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out, data = Path(args.out), Path(args.data)
    stage1 = None
    if args.warm_start:
        stage1 = ("train/configs/shapes/pmtp_warm.yaml", out / STAGES["pmtp"][2])
    elif args.continue_from:
        stage1 = ("train/configs/shapes/pmtp_continue.yaml", Path(args.continue_from))
    elif args.regrid:
        stage1 = ("train/configs/shapes/pmtp_regrid.yaml", out / STAGES["pmtp"][2])
    for step in STEPS[: STEPS.index(args.until) + 1]:
        logger.info("recipe step: %s", step)
        if step == "data":
            run_data(out, data, args.n_train)
        elif step in ("vq", "init") and earlier or step == "vision" and args.continue_from:
            logger.info("skipped: stage 1 starts from %s", earlier)
        elif step == "vq":
            run_vq(out, args.vq_steps, args.grid)
        elif step == "init":
            run_init(out, args.grid, Path(args.regrid) if args.regrid else None)
        elif step == "vision":
            run_vision(out, Path(args.warm_start) if args.warm_start else out / "init")
        else:
            run_stage(out, data, step, args.set, stage1)
    if args.export:
        export(last_model(out), Path(args.export))
    return 0


if __name__ == "__main__":
    sys.exit(main())
