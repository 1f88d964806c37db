"""Stages 1 and 2's data: image records, their cached VQ tokens, micro-batches and validation."""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from train.data import ensure_data, micro_batch_indices, micro_seed, read_records, read_splits
from train.losses import AbsentPhrases, GroundingInputs, SupervisedBatch, supervised_batch
from train.validation import validate
from train.vq_cache import load_or_encode

logger = logging.getLogger(__name__)


class SupervisedData:
    """Built once per run (`run` is a `train.loop.Run`); `batch(step, micro)` is deterministic."""

    def __init__(self, run, caption_dropout: float,
                 scramble: Callable[[GroundingInputs, np.random.Generator], GroundingInputs] | None = None,
                 grounding_share: float = 1.0, absent: AbsentPhrases | None = None, absent_share: float = 0.0):
        cfg, acc = run.cfg, run.accelerator
        with acc.main_process_first():  # one process writes data and cache, the others read them
            data_dir = ensure_data(cfg.data.data_dir, cfg.data.synth_if_missing, cfg.data.synth_size)
        parts = read_splits(data_dir, cfg.data.train_split, cfg.data.max_records, cfg.data.use_expressions)
        with acc.main_process_first():  # one cache file per split: a run on another split list reuses it
            tokens = [load_or_encode(run.janus, run.processor.image_processor, part,
                                     cfg.data.vq_cache_dir or data_dir / "vq_cache") for part in parts]  # [n, T] each
        self.records = [r for part in parts for r in part]
        self.tokens = torch.cat(tokens)  # [N, T]
        val = read_records(data_dir, cfg.data.val_split, cfg.data.num_val_layouts) if cfg.data.num_val_layouts else []
        self.val_layouts = [r.layout for r in val]
        self.run, self.caption_dropout, self.scramble = run, caption_dropout, scramble
        self.grounding_share = grounding_share
        self.absent, self.absent_share = absent, absent_share  # phrases a record lacks, asked with answer `none`
        self.num_features = run.janus.config.vision_config.num_image_tokens  # SigLIP tokens per image
        self.dtype = next(run.janus.parameters()).dtype
        logger.info("%d training records, %d validation layouts", len(self.records), len(self.val_layouts))

    def batch(self, step: int, micro: int) -> SupervisedBatch:
        run, tc = self.run, self.run.cfg.train
        idx = micro_batch_indices(len(self.records), tc.seed, step, micro, tc.grad_accum, tc.batch_size,
                                  run.rank, run.world)
        rng = np.random.default_rng(micro_seed(tc.seed, step, micro, run.rank))
        batch = supervised_batch([self.records[i] for i in idx], self.tokens[idx], run.processor, run.special, rng,
                                 self.caption_dropout, run.cfg.data.max_phrases, self.num_features, run.device,
                                 self.dtype, self.grounding_share, self.absent, self.absent_share)
        if self.scramble is not None:  # e.g. train.losses.scramble_box_numbers
            batch.grounding = self.scramble(batch.grounding, rng)
        return batch

    def validate(self, step: int) -> None:
        validate(self.run.janus, self.run.processor, self.val_layouts, step, self.run.metrics)
