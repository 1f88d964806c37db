"""`python -m model {generate,ground,cycle}`: the model from the command line.

Results go to stdout as JSON (one line per layout or per image: JSONL for batches), boxes in
pixels; images go to --out. Bad input prints one line on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterator

from model.images import ImageInputError, open_image
from model.layout import LayoutError, load_layouts
from model.loading import ModelLoadError
from model.results import GROUNDING_BEAMS

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """Bad input: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise CliError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", default=None, help="checkpoint dir or cached hub id (default: built-in echogen-shapes)")
    common.add_argument("--adapter", action="append", default=None,
                        help="LoRA adapter dir (peft) on top of --model; repeat to merge several in order")
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 or auto (default: cpu)")
    common.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bf16 on GPU, fp32 on CPU)")
    common.add_argument("--seed", type=int, default=0, help="candidate k uses seed + k (default: 0)")
    common.add_argument("--cfg", type=float, default=None,
                        help="classifier-free guidance weight, >= 1 (default: the model's own; Janus-Pro's is 5)")
    common.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature, 0 = greedy (default: the model's own; Janus-Pro's is 1)")
    common.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest image tokens")
    common.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    common.add_argument("--beams", type=int, default=GROUNDING_BEAMS,
                        help=f"beam width of grounding answers, 1 = greedy (default: {GROUNDING_BEAMS})")
    common.add_argument("--fp32-weights", action="store_true",
                        help="decode on float32 weights, as transformers' own loop does (default on a CPU: "
                             "the decode steps' weights packed in float16, faster, same math up to their rounding)")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")

    parser = _Parser(prog="python -m model", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    gen = sub.add_parser("generate", parents=[common], help="layout(s) -> images")
    gen.add_argument("--layout", required=True, help="layout .json (one) or .jsonl (many)")
    gen.add_argument("--num-images", type=int, default=1, help="candidates per layout (default: 1)")
    gen.add_argument("--out", required=True, help="directory for the PNG images")
    ground = sub.add_parser("ground", parents=[common], help="image + phrases -> boxes")
    source = ground.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="an image file")
    source.add_argument("--batch", help='JSONL, each line {"image": path, "phrases": [...]}')
    ground.add_argument("--phrase", action="append", default=[], help="a phrase to ground (repeatable)")
    cycle = sub.add_parser("cycle", parents=[common], help="layout -> images -> re-grounded layout, scored")
    cycle.add_argument("--layout", required=True, help="layout .json (one) or .jsonl (many)")
    cycle.add_argument("--num-images", type=int, default=1, help="candidates per layout (default: 1)")
    cycle.add_argument("--out", default=None, help="directory for the PNG images (optional)")
    return parser


def _sampling(args, defaults=None):
    """The sampling flags given, over `defaults` (the loaded model's; checked alone before loading)."""
    from model.results import SamplingConfig

    try:
        return (defaults or SamplingConfig()).with_overrides(cfg=args.cfg, temperature=args.temperature,
                                                             top_k=args.top_k, top_p=args.top_p)
    except ValueError as err:
        raise CliError(str(err)) from None


def _out_dir(path: str) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CliError(f"cannot create output directory {out}: {err.strerror}") from None
    return out


def _num_images(n: int) -> int:
    if not 1 <= n <= 64:
        raise CliError(f"--num-images must be in [1, 64], got {n}")
    return n


def _round(box) -> list[float] | None:
    return None if box is None else [round(v, 2) for v in box]


def _grounding_record(g) -> dict[str, Any]:
    """One answer as JSON; `present` (model.presence) where measured, `absent` when below the threshold."""
    record = {"phrase": g.phrase, "box": _round(g.box), "valid": g.valid}
    if g.present is not None:
        record.update(present=round(g.present, 4), absent=g.absent)
    return record


def _ground_requests(args) -> list[tuple[str, list[str]]]:
    if args.image:
        if not args.phrase:
            raise CliError("ground --image needs at least one --phrase")
        return [(args.image, args.phrase)]
    if args.phrase:
        raise CliError("--phrase is not used with --batch (phrases come from the file)")
    path = Path(args.batch)
    if not path.is_file():
        raise CliError(f"batch file not found: {path}")
    requests = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise CliError(f"{path} line {n} is not valid JSON: {err.msg}") from None
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise CliError(f'{path} line {n} needs {{"image": path, "phrases": [...]}}')
        phrases = record.get("phrases")
        if not isinstance(phrases, list) or not phrases:
            raise CliError(f"{path} line {n} needs a non-empty 'phrases' list")
        image = Path(record["image"])
        requests.append((str(image if image.is_absolute() else path.parent / image), phrases))
    if not requests:
        raise CliError(f"{path} holds no requests")
    return requests


def _load_model(args):
    from model.echogen import EchoGen  # heavy: only after the input checked out

    return EchoGen.load(args.model, adapter=args.adapter, device=args.device, dtype=args.dtype,
                        grounding_beams=args.beams, half_weights=False if args.fp32_weights else None)


def run(args) -> Iterator[dict[str, Any]]:
    """Execute one command; yields the JSON records to print."""
    _sampling(args)  # bad flags fail before the model loads
    if args.command == "ground":
        requests = _ground_requests(args)
        images = [open_image(path) for path, _ in requests]  # fail on bad input before loading the model
        eg = _load_model(args)
        for (path, _), image, found in zip(requests, images, eg.ground(images, [p for _, p in requests])):
            yield {"image": path, "width": image.width, "height": image.height,
                   "objects": [_grounding_record(g) for g in found]}
        return
    layouts = load_layouts(args.layout)
    num_images = _num_images(args.num_images)
    out = _out_dir(args.out) if args.out else None
    eg = _load_model(args)
    sampling = _sampling(args, eg.sampling)
    for i, layout in enumerate(layouts):
        for warning in layout.warnings:
            logging.warning("layout %d: %s", i, warning)
        if args.command == "generate":
            gen = eg.generate([layout], num_images, args.seed, sampling)
            paths = []
            for k, image in enumerate(gen.images[0]):
                path = out / f"layout{i:03d}_seed{gen.seeds[k]}.png"
                image.save(path)
                paths.append({"path": str(path), "seed": gen.seeds[k]})
            yield {"layout": i, "width": eg.image_size, "height": eg.image_size, "images": paths}
        else:
            result = eg.cycle(layout, num_images, args.seed, sampling)
            candidates = []
            for cand in result.candidates:
                record = cand.to_dict()
                if out is not None:
                    path = out / f"layout{i:03d}_seed{cand.seed}.png"
                    cand.image.save(path)
                    record["path"] = str(path)
                candidates.append(record)
            best = result.candidates[0].score
            yield {"layout": i, "mean_iou": best.mean_iou, "mean_l1": best.mean_l1,
                   "pass_rate": best.pass_rate, "candidates": candidates}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
        if not args.verbose:
            _quiet_libraries()
        for record in run(args):
            print(json.dumps(record), flush=True)
        return 0
    except (CliError, LayoutError, ImageInputError, ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
