"""Run logs: TensorBoard when it is installed, else `metrics.csv` (and PNGs for images).

`metrics.csv` is long format, one `step,name,value` row per scalar, so any metric can appear at
any step and a resumed run appends to the same file.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from PIL import Image

logger = logging.getLogger(__name__)


def setup_logging(is_main: bool) -> None:
    """Library loggers at INFO on the main process, WARNING elsewhere; transformers kept quiet.

    Leaves an already configured root logger (pytest, an embedding application) alone."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if is_main else logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class MetricLogger:
    """Scalars and images of the main process; a no-op on the others."""

    def __init__(self, log_dir: str | Path, enabled: bool = True):
        self.log_dir = Path(log_dir)
        self.enabled = enabled
        self.writer = None
        self.csv_path = self.log_dir / "metrics.csv"
        if not enabled:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir / "tensorboard"))
        except ImportError:
            logger.info("tensorboard is not installed: logging scalars to %s", self.csv_path)
        if not self.csv_path.exists():
            self.csv_path.write_text("step,name,value\n")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.csv_path.open("a", newline="") as handle:  # always: tests and scripts read it
            writer = csv.writer(handle)
            for name, value in values.items():
                writer.writerow([step, name, repr(float(value))])
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def images(self, step: int, name: str, images: list[Image.Image]) -> None:
        if not self.enabled:
            return
        out = self.log_dir / "images" / f"step-{step}"
        out.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            image.save(out / f"{name}-{i}.png")
        if self.writer is not None:
            import numpy as np

            for i, image in enumerate(images):
                self.writer.add_image(f"{name}/{i}", np.asarray(image), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> dict[str, dict[int, float]]:
    """metrics.csv -> {name: {step: value}} (the last row wins for a repeated step)."""
    out: dict[str, dict[int, float]] = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            out.setdefault(row["name"], {})[int(row["step"])] = float(row["value"])
    return out
