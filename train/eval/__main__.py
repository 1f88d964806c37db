"""Evaluation CLI: `python -m train.eval {detector,fidelity,grounding,cycle,presence,loss,fresh,reward,refl4} ...`.

    python -m train.eval detector  --data DIR [--split test] [--max N] [--blur R --noise S --jpeg Q] [--round-trip MODEL]
    python -m train.eval fidelity  --data DIR [--model DIR] [--adapter DIR] [--split test] [--max N] [--candidates N [--compose]] [--out FILE]
    python -m train.eval grounding --data DIR [--model DIR] [--adapter DIR] ...
    python -m train.eval cycle     --data DIR [--model DIR] [--adapter DIR] ...
    python -m train.eval presence  --data DIR [--model DIR] [--round-trip] ...
    python -m train.eval loss      --data DIR [--model DIR] [--adapter DIR] [--split val] [--max N]
    python -m train.eval fresh     [--model DIR] [--adapter DIR] [--scenes 12] [--pair-scenes 60] [--scene-seed S]
    python -m train.eval reward    --data DIR [--model DIR] [--max N] [--group-size 8] [--beams 1]
    python -m train.eval refl4     --pred PRED.json --ann ANN.jsonl [--category-map MAP.json]

`detector` and `refl4` print a JSON object; the model commands print a markdown table
(`--format` switches). `presence` asks whether the model tells phrases that are in a render
from phrases one word off (answer `none`, train/eval/presence.py). `loss` gives stage 1's
teacher-forced losses on held-out records, samples nothing, and so tracks a long run between
checkpoints (train/eval/loss.py). `reward` asks whether stage 3's reward ranks a group of one layout's
images as the detector does (train/eval/reward_alignment.py); it grounds greedily, as stage 3
does. `--out FILE` writes the metrics JSON. Without --model the built-in model is used. Bad
input gives one line on stderr and exit code 2; a reader that leaves early (`| head`) ends it
with exit code 1, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

from model.results import GROUNDING_BEAMS
from train.eval.fresh import FRESH_SEED, PAIR_SCENES
from train.eval.fresh import SCENES as FRESH_SCENES
from train.eval.report import markdown_table, to_builtin, write_json
from train.shapes.records import SPLITS, RecordError, load_records

logger = logging.getLogger("train.eval")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        self.exit(2, f"error: {message}\n")


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="Shapes World directory (python -m train.synth)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="split to score")
    parser.add_argument("--max", type=int, default=None, help="score only the first N records")


def _output_args(parser: argparse.ArgumentParser, default_format: str) -> None:
    parser.add_argument("--out", type=Path, default=None, help="write the metrics JSON here")
    parser.add_argument("--format", choices=("table", "json"), default=default_format, help="what to print")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _model_source_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model directory (default: the built-in model)")
    parser.add_argument("--adapter", action="append", default=None,
                        help="LoRA adapter directory; repeat to merge several in order")
    parser.add_argument("--device", default="cpu", help="torch device")


def _model_args(parser: argparse.ArgumentParser) -> None:
    _model_source_args(parser)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--cfg", type=float, default=None,
                        help="classifier-free guidance weight (default: the model's own; Janus-Pro's is 5)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature, 0 = greedy (default: the model's own; Janus-Pro's is 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="layouts or images per model call")
    parser.add_argument("--beams", type=int, default=GROUNDING_BEAMS,
                        help=f"beam width of grounding answers, 1 = greedy (default: {GROUNDING_BEAMS})")
    parser.add_argument("--fp32-weights", action="store_true",
                        help="decode on float32 weights (default on a CPU: float16-packed, as the CLI and app)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m train.eval", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    detector = commands.add_parser("detector", help="the detector's COCO AP on clean renders")
    _data_args(detector)
    detector.add_argument("--blur", type=float, default=0.0, help="degrade renders: Gaussian blur radius (px)")
    detector.add_argument("--noise", type=float, default=0.0, help="degrade renders: noise sigma (0-255)")
    detector.add_argument("--jpeg", type=int, default=None, help="degrade renders: JPEG quality")
    detector.add_argument("--round-trip", type=Path, default=None, metavar="MODEL",
                          help="score the renders after a round trip through MODEL's image tokenizer (a model "
                               "directory): the ceiling of what that model can draw")
    _output_args(detector, "json")
    for name, text in (("fidelity", "layout fidelity of generated images (detector-judged)"),
                       ("grounding", "grounding accuracy (Ref-L4 definitions)"),
                       ("cycle", "cycle consistency: layout vs re-grounded boxes")):
        command = commands.add_parser(name, help=text)
        _data_args(command)
        _model_args(command)
        _output_args(command, "table")
        if name == "fidelity":
            command.add_argument("--candidates", type=int, default=1,
                                 help="images per layout; keep the one the model re-grounds best (the app's "
                                      "ranking), 1 = score the single drawing (default)")
            command.add_argument("--compose", action="store_true",
                                 help="with --candidates N: compose one image from the N object by object, each "
                                      "object from the candidate in which the model re-grounds it best (EchoGen.compose)")
    fresh = commands.add_parser("fresh", help="grounding on freshly rendered scenes (no data dir)")
    _model_args(fresh)
    _output_args(fresh, "table")
    fresh.add_argument("--scenes", type=int, default=FRESH_SCENES, help="scenes to ground every object of")
    fresh.add_argument("--pair-scenes", type=int, default=PAIR_SCENES, help="later scenes searched for color pairs")
    fresh.add_argument("--scene-seed", type=int, default=FRESH_SEED, help="seed the scenes are rendered from")
    reward = commands.add_parser("reward", help="does stage 3's cycle reward rank images like the detector?")
    _data_args(reward)
    _model_args(reward)
    _output_args(reward, "table")
    reward.add_argument("--group-size", type=int, default=8, help="images per layout (stage 3's rl.group_size)")
    reward.set_defaults(beams=1)  # stage 3 grounds its rollouts greedily
    presence = commands.add_parser("presence", help="does the model tell present phrases from absent ones?")
    _data_args(presence)
    _model_args(presence)
    _output_args(presence, "table")
    presence.add_argument("--round-trip", action="store_true",
                          help="ask about the renders after the model's own image tokenizer (as in its drawings)")
    loss = commands.add_parser("loss", help="held-out teacher-forced L2I and grounding losses (no sampling)")
    _data_args(loss)
    _model_source_args(loss)
    loss.add_argument("--batch-size", type=int, default=16, help="records per model call")
    # Held-out tracking reads val by default; float32 weights, as in training; nothing is sampled.
    loss.set_defaults(split="val", cfg=None, temperature=None, beams=1, fp32_weights=True)
    _output_args(loss, "table")
    refl4 = commands.add_parser("refl4", help="score a Ref-L4-style prediction file")
    refl4.add_argument("--pred", type=Path, required=True, help="predictions [{id, pred_bbox, format}]")
    refl4.add_argument("--ann", type=Path, required=True, help="annotations [{id, bbox (xywh), ori_category_id}]")
    refl4.add_argument("--category-map", type=Path, default=None, help="JSON {category id: merged id}")
    _output_args(refl4, "json")
    return parser


def _records(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.command == "fresh":  # renders its own scenes
        if args.scenes < 1 or args.pair_scenes < 1:
            raise RecordError("--scenes and --pair-scenes must be at least 1")
        return []
    if args.command == "reward" and args.group_size < 2:
        raise RecordError(f"--group-size must be at least 2, got {args.group_size}")
    if args.max is not None and args.max < 1:
        raise RecordError(f"--max must be at least 1, got {args.max}")
    records = load_records(args.data, args.split, limit=args.max)
    if args.command in ("detector", "grounding", "presence", "loss"):
        missing = [r["image"] for r in records if not (args.data / r["image"]).is_file()]
        if missing:
            raise RecordError(f"{len(missing)} images missing under {args.data}, e.g. {missing[0]}")
    return records


class ModelUnavailable(Exception):
    """The model could not be loaded (missing or broken checkpoint)."""


def _load_model(args: argparse.Namespace) -> Any:
    from model import EchoGen  # heavy; only model commands import it
    from model.loading import ModelLoadError

    try:
        return EchoGen.load(args.model, adapter=args.adapter, device=args.device, grounding_beams=args.beams,
                            half_weights=False if args.fp32_weights else None)
    except (ModelLoadError, OSError, ValueError) as err:
        raise ModelUnavailable(str(err)) from None


def _sampling(args: argparse.Namespace, defaults: Any = None) -> Any:
    """--cfg and --temperature over `defaults` (the loaded model's; checked alone before loading)."""
    from model.results import SamplingConfig

    return (defaults or SamplingConfig()).with_overrides(cfg=args.cfg, temperature=args.temperature)


def run_detector(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.eval.fidelity import evaluate_detector

    return evaluate_detector(args.data, records, progress=not args.no_progress, degradation=args.degradation,
                             round_trip=None if model is None else model.round_trip)


def run_fidelity(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.eval.fidelity import evaluate_fidelity

    return evaluate_fidelity(model, records, seed=args.seed, sampling=args.sampling,
                             batch_size=args.batch_size, candidates=args.candidates, compose=args.compose,
                             progress=not args.no_progress)


def run_grounding(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.eval.grounding import evaluate_grounding

    return evaluate_grounding(model, records, args.data, batch_size=args.batch_size, progress=not args.no_progress)


def run_presence(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.eval.presence import evaluate_presence

    return evaluate_presence(model, records, args.data, seed=args.seed, batch_size=args.batch_size,
                             round_trip=model.round_trip if args.round_trip else None, progress=not args.no_progress)


def run_loss(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.data import read_records
    from train.eval.loss import evaluate_loss

    return evaluate_loss(model, read_records(args.data, args.split, args.max), batch_size=args.batch_size,
                         progress=not args.no_progress)


def run_cycle(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.eval.cycle import evaluate_cycle

    return evaluate_cycle(model, records, seed=args.seed, sampling=args.sampling, progress=not args.no_progress)


def run_fresh(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.eval.fresh import evaluate_fresh

    return evaluate_fresh(model, args.scenes, args.pair_scenes, args.scene_seed)


def run_reward(args: argparse.Namespace, records: list[dict], model: Any) -> dict[str, Any]:
    from train.eval.reward_alignment import evaluate_reward_alignment

    return evaluate_reward_alignment(model, records, group_size=args.group_size, seed=args.seed,
                                     sampling=args.sampling, progress=not args.no_progress)


def run_refl4(args: argparse.Namespace) -> dict[str, Any]:
    from train.eval.refl4 import ScoringError, read_json_list, score_refl4

    category_map = None
    if args.category_map is not None:
        import json

        try:
            category_map = json.loads(args.category_map.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ScoringError(f"cannot read --category-map {args.category_map}: {err}") from None
        if not isinstance(category_map, dict):
            raise ScoringError("--category-map must hold a JSON object")
    return score_refl4(read_json_list(args.pred), read_json_list(args.ann), category_map)


RUNNERS: dict[str, Callable[[argparse.Namespace, list[dict], Any], dict[str, Any]]] = {
    "detector": run_detector, "fidelity": run_fidelity, "grounding": run_grounding, "cycle": run_cycle,
    "fresh": run_fresh, "reward": run_reward, "presence": run_presence, "loss": run_loss,
}


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from train.eval.refl4 import ScoringError

    if args.command == "refl4":
        try:
            metrics = run_refl4(args)
        except ScoringError as err:
            return _fail(str(err))
        run = {"command": "refl4", "pred": str(args.pred), "ann": str(args.ann)}
    else:
        try:
            records = _records(args)
            if args.command == "detector":
                from train.eval.degrade import Degradation

                args.degradation = Degradation(args.blur, args.noise, args.jpeg)
            else:
                if args.batch_size < 1:
                    raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
                if getattr(args, "candidates", 1) < 1:
                    raise ValueError(f"--candidates must be at least 1, got {args.candidates}")
                args.sampling = _sampling(args)
        except (RecordError, ValueError) as err:
            return _fail(str(err))
        model = None
        if args.command == "detector" and args.round_trip is not None:
            try:  # only its image tokenizer is used
                model = _load_model(argparse.Namespace(model=args.round_trip, adapter=None, device="cpu", beams=1,
                                                       fp32_weights=False))
            except ModelUnavailable as err:
                return _fail(f"cannot load --round-trip {args.round_trip}: {err}")
        elif args.command != "detector":
            try:
                model = _load_model(args)
            except ModelUnavailable as err:
                return _fail(f"cannot load the model: {err}")
            args.sampling = _sampling(args, model.sampling)
        metrics = RUNNERS[args.command](args, records, model)
        if args.command == "fresh":
            run = {"command": "fresh", "scenes": args.scenes, "pair_scenes": args.pair_scenes,
                   "scene_seed": args.scene_seed}
        else:
            run = {"command": args.command, "data": str(args.data), "split": args.split, "records": len(records)}
            if args.command == "reward":
                run["group_size"] = args.group_size
            if args.command == "fidelity":
                run["candidates"] = args.candidates
                run["compose"] = args.compose
            if args.command == "presence":
                run["round_trip"] = args.round_trip
        if args.command == "detector" and args.degradation.active:
            run["degradation"] = {"blur": args.blur, "noise": args.noise, "jpeg": args.jpeg}
        if args.command == "detector" and model is not None:
            run["round_trip"] = str(args.round_trip)
        elif args.command == "loss":
            run.update(model=args.model, adapter=args.adapter)
        elif model is not None:
            run.update(model=args.model, adapter=args.adapter, seed=args.seed, cfg=args.sampling.cfg,
                       temperature=args.sampling.temperature, beams=args.beams, half_weights=model.half_weights)
    payload = to_builtin({**metrics, "run": run})
    if args.out is not None:
        write_json(args.out, payload)
        logger.info("wrote %s", args.out)
    if args.format == "json":
        import json

        text = json.dumps(payload, indent=2)
    else:
        shown = {k: v for k, v in payload.items() if k not in ("run", "per_group")}  # per_group: JSON only
        text = markdown_table(f"{args.command} metric", shown)
    return _print_result(text)


def _print_result(text: str) -> int:
    """Print the metrics; a reader that left early (`| head`) ends the command with exit code 1
    instead of a traceback (the --out JSON is already written)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at devnull so the interpreter's final flush cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
