"""`python -m train.recipes.shapes_table`: the built-in model's results table, from `python -m train.eval`.

Runs the three model evaluations (fidelity, grounding, cycle) on the Shapes World test split
for each finished stage model of a recipe run (plus any `--extra NAME=DIR` model, such as a
single-task baseline), saves every metrics JSON under OUT/eval/, and prints the markdown
table of the model card:

    python -m train.recipes.shapes_table --out runs/shapes --data data/shapes

Each cell is exactly what `python -m train.eval <command> --model DIR --data DATA --split test
--max N` prints for that model (same seeds), so any row can be re-checked alone. Images are
drawn with each model's own sampling defaults (its generation_config.json) unless `--cfg` /
`--temperature` set them for every row, on the evaluation's default weights (float16-packed
decode steps on a CPU) unless `--fp32-weights` asks for float32 ones.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

from train.eval.__main__ import main as eval_main

COLUMNS = (  # (header, command, metric key)
    ("AP", "fidelity", "AP"), ("AP50", "fidelity", "AP50"), ("AP75", "fidelity", "AP75"),
    ("presence", "fidelity", "presence"), ("color", "fidelity", "color"), ("shape", "fidelity", "shape"),
    ("Acc@0.5", "grounding", "Acc@0.5"), ("Acc@0.75", "grounding", "Acc@0.75"), ("mAcc", "grounding", "mAcc"),
    ("cycle IoU", "cycle", "mean_iou"),
)
STAGE_ROWS = (("stage 1 (PMTP)", "pmtp"), ("+ stage 2 (DJO)", "djo"), ("+ stage 3 (Cycle RL)", "cycle_rl"))
DEFAULT_MAX = {"fidelity": 100, "grounding": 100, "cycle": 50}


def evaluate(model: Path, data: Path, dest: Path, limits: dict[str, int],
             sampling: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run the three evaluations of one model (skipping those already saved under dest).

    `sampling`: extra eval flags such as ("--cfg", "3")."""
    dest.mkdir(parents=True, exist_ok=True)
    results = {}
    for command, limit in limits.items():
        path = dest / f"{command}.json"
        if not path.is_file():
            with contextlib.redirect_stdout(io.StringIO()):  # the JSON goes to `path`; stdout is for the table
                code = eval_main([command, "--model", str(model), "--data", str(data), "--split", "test",
                                  "--max", str(limit), "--out", str(path), "--format", "json", "--no-progress",
                                  *sampling])
            if code != 0:
                raise SystemExit(f"error: train.eval {command} failed for {model}")
        results[command] = json.loads(path.read_text(encoding="utf-8"))
    return results


def markdown(rows: list[tuple[str, dict[str, dict]]]) -> str:
    lines = ["| model | " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, results in rows:
        cells = [f"{results[c][k]:.3f}" if k in results.get(c, {}) else "-" for _, c, k in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.recipes.shapes_table", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shapes"), help="recipe run dir (default: runs/shapes)")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"), help="Shapes World dir with the test split")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=DIR",
                        help="another model to add as a row (repeatable)")
    for command, limit in DEFAULT_MAX.items():
        parser.add_argument(f"--max-{command}", type=int, default=limit, help=f"test records for {command}")
    parser.add_argument("--cfg", type=float, default=None, help="guidance for every row (default: each model's own)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature for every row (default: each model's own)")
    parser.add_argument("--fp32-weights", action="store_true",
                        help="decode on float32 weights (default on a CPU: float16-packed; see model/matmul.py)")
    parser.add_argument("--eval-dir", default="eval", help="folder under --out for the metrics JSON (default: eval)")
    args = parser.parse_args(argv)
    sampling = tuple(flag for name in ("cfg", "temperature") if getattr(args, name) is not None
                     for flag in (f"--{name}", str(getattr(args, name))))
    if args.fp32_weights:
        sampling = ("--fp32-weights", *sampling)
    limits = {c: getattr(args, f"max_{c}") for c in DEFAULT_MAX}
    models = [(name, args.out / stage / "final" / "model", stage) for name, stage in STAGE_ROWS]
    for extra in args.extra:
        name, sep, path = extra.partition("=")
        if not sep:
            parser.error(f"--extra takes NAME=DIR, got {extra!r}")
        models.append((name, Path(path), name.replace(" ", "_")))
    rows = []
    for name, model, key in models:
        if (model / "config.json").is_file():
            rows.append((name, evaluate(model, args.data, args.out / args.eval_dir / key, limits, sampling)))
    if not rows:
        print(f"error: no finished stage model under {args.out}", file=sys.stderr)
        return 2
    table = markdown(rows)
    (args.out / args.eval_dir / "table.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
