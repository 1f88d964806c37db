"""`EchoGen`: one loaded Janus model doing layout-to-image, grounding and the cycle check.

This is the API the CLI, the app and evaluation use. Training works one level lower, on
`model.generation` and `model.inputs`, with the same functions underneath.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from PIL import Image

from model import generation, inputs
from model.box_grammar import BoxGrammar
from model.compose import box_cells, compose_tokens
from model.layout import Layout, clean_phrase
from model.layout_text import letterbox_denormalize, parse_box
from model.loading import ModelLoadError, load_janus, unwrap_peft
from model.matmul import half_matmul_usable
from model.metrics import cycle_score
from model.presence import PresenceProbe, answer_start_tokens
from model.prompts import grounding_prompt, image_block, l2i_prompt
from model.results import GROUNDING_BEAMS, CycleCandidate, CycleResult, Grounding, SamplingConfig
from model.tokens import SpecialTokens

logger = logging.getLogger(__name__)

MAX_GROUNDING_TOKENS = 24  # "[1000, 1000, 1000, 1000]</box>" with room for a chatty model
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Generation:
    images: list[list[Image.Image]]  # [layout][candidate]
    tokens: torch.Tensor  # [layouts, candidates, T] image token ids
    seeds: list[int]  # the seed of candidate k is seeds[k]


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] -> RGB images."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in array]


class EchoGen:
    def __init__(self, model, processor, max_batch: int = 16, constrain_boxes: bool = True,
                 grounding_beams: int = GROUNDING_BEAMS, half_weights: bool | None = None):
        self.model = unwrap_peft(model)  # a PeftModel's adapter stays active in place
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.special = SpecialTokens.from_tokenizer(self.tokenizer)
        self.max_batch = max_batch
        # grounding answers always parse into a box when the tokenizer allows it (model.box_grammar)
        self.box_grammar = BoxGrammar.from_tokenizer(self.tokenizer) if constrain_boxes else None
        self.answer_starts = answer_start_tokens(self.tokenizer)  # (box, none) first tokens: model.presence
        if grounding_beams < 1:
            raise ValueError(f"grounding_beams must be >= 1, got {grounding_beams}")
        self.grounding_beams = grounding_beams  # beam width of grounding answers; 1: greedy
        # how images are drawn when a caller gives no SamplingConfig: the checkpoint's own defaults
        try:
            self.sampling = SamplingConfig.from_generation_config(getattr(model, "generation_config", None))
        except ValueError as err:
            raise ModelLoadError(str(err)) from None
        # decode steps on weights packed in float16 (model.matmul): None picks them wherever usable
        # (float32 on an x86 CPU); False keeps the exact float32 matmuls of transformers' own loop
        usable = half_matmul_usable(self.device, self.dtype)
        if half_weights and not usable:
            raise ValueError("half_weights needs a float32 model on a CPU whose torch has fbgemm (x86)")
        self.half_weights = usable if half_weights is None else half_weights
        vq = model.config.vq_config
        self.token_grid = vq.num_patches  # image tokens per side
        self.num_image_tokens = vq.num_patches ** 2
        self.image_size = vq.num_patches * 2 ** (len(vq.channel_multiplier) - 1)

    @classmethod
    def load(cls, path=None, adapter=None, device: str | None = "cpu", dtype=None,
             constrain_boxes: bool = True, grounding_beams: int = GROUNDING_BEAMS,
             half_weights: bool | None = None) -> EchoGen:
        model, processor = load_janus(path, adapter=adapter, device=device, dtype=dtype)
        return cls(model, processor, constrain_boxes=constrain_boxes, grounding_beams=grounding_beams,
                   half_weights=half_weights)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ---- layout -> image -------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, layouts: Sequence[Layout], num_images: int = 1, seed: int = 0,
        sampling: SamplingConfig | None = None, progress: Progress | None = None,
    ) -> Generation:
        """`num_images` candidates per layout; candidate k is drawn with seed `seed + k`.

        `sampling` None: the checkpoint's defaults (`self.sampling`)."""
        if num_images < 1:
            raise ValueError("num_images must be at least 1")
        sampling = self.sampling if sampling is None else sampling
        rows = [(i, k) for i in range(len(layouts)) for k in range(num_images)]
        tokens = torch.zeros(len(layouts), num_images, self.num_image_tokens, dtype=torch.long)
        images: list[list[Image.Image | None]] = [[None] * num_images for _ in layouts]
        for start in range(0, len(rows), self.max_batch):
            chunk = rows[start:start + self.max_batch]
            prompts = [l2i_prompt(layouts[i], self.tokenizer.boi_token) for i, _ in chunk]
            gens = [torch.Generator(device="cpu").manual_seed(seed + k) for _, k in chunk]
            out = self.generate_tokens(prompts, sampling, gens)
            pictures = to_pil(generation.decode_image_tokens(self.model, out))
            for (i, k), toks, picture in zip(chunk, out.cpu(), pictures):
                tokens[i, k] = toks
                images[i][k] = picture
            if progress:
                progress(min(start + self.max_batch, len(rows)), len(rows))
        return Generation(images, tokens, [seed + k for k in range(num_images)])  # type: ignore[arg-type]

    def generate_tokens(
        self, prompts: list[str], sampling: SamplingConfig, generators: list[torch.Generator] | None
    ) -> torch.Tensor:
        """Image tokens [B, T] for L2I prompt strings (the loop itself is `generation.decode`).

        Repeated prompts (N candidates of one layout) are prefilled once."""
        unique = list(dict.fromkeys(prompts))
        row_index = torch.tensor([unique.index(p) for p in prompts], device=self.device)
        batch = inputs.encode_prompts(self.tokenizer, unique, self.device)
        if sampling.cfg > 1:
            batch = inputs.cfg_batch(batch, self.special)  # rows [cond; uncond]
            row_index = torch.cat([row_index, row_index + len(unique)])
        request = generation.DecodeRequest(
            inputs_embeds=inputs.embed_prompts(self.model, batch.input_ids),
            attention_mask=batch.attention_mask, num_tokens=self.num_image_tokens,
            head=generation.image_head(self.model, self.half_weights), embed=generation.image_embed(self.model),
            cfg=sampling.cfg, row_index=row_index if len(unique) < len(prompts) else None,
            half_weights=self.half_weights,
        )
        return generation.decode(self.model, request, sampling, generators)

    @torch.no_grad()
    def round_trip(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """Each image through the model's own image tokenizer (encode, decode), at the model's size.

        What the model would draw if it wrote exactly the image's tokens: the ceiling its image
        tokenizer puts on any drawing."""
        out: list[Image.Image] = []
        for start in range(0, len(images), self.max_batch):
            chunk = list(images[start:start + self.max_batch])
            pixels = inputs.pixel_values(self.processor.image_processor, chunk, self.device, self.dtype)
            tokens = generation.encode_image_tokens(self.model, pixels)  # [b, T]
            out += to_pil(generation.decode_image_tokens(self.model, tokens))
        return out

    # ---- image + phrase -> box ---------------------------------------------------------
    @torch.no_grad()
    def ground(
        self, images: Sequence[Image.Image], phrases: Sequence[Sequence[str]], progress: Progress | None = None
    ) -> list[list[Grounding]]:
        """One box per phrase per image, in each image's own pixel coordinates."""
        if len(images) != len(phrases):
            raise ValueError(f"{len(images)} images but {len(phrases)} phrase lists")
        cleaned = [[clean_phrase(p) for p in group] for group in phrases]
        pairs = [(i, p) for i, group in enumerate(cleaned) for p in group]
        if not pairs:
            return [[] for _ in images]
        pixels = inputs.pixel_values(self.processor.image_processor, list(images), self.device, self.dtype)
        features = inputs.image_features(self.model, pixels)  # [N, P, D], once per image
        block = image_block(self.tokenizer.boi_token, self.tokenizer.image_token, self.tokenizer.eoi_token,
                            features.shape[1])
        answers: list[str] = []
        present: list[float | None] = []
        for start in range(0, len(pairs), self.max_batch):
            chunk = pairs[start:start + self.max_batch]
            batch = inputs.encode_prompts(self.tokenizer, [grounding_prompt(p, block) for _, p in chunk], self.device)
            index = torch.tensor([i for i, _ in chunk], device=self.device)
            request = self._grounding_request(batch, features, index)
            probe = None
            if self.answer_starts is not None:  # reads presence at the first answer step, then constrains as before
                probe = PresenceProbe(*self.answer_starts, request.constrain, request.beams)
                request.constrain = probe
            out = generation.decode(self.model, request)
            answers += self.tokenizer.batch_decode(out, skip_special_tokens=True)
            present += [None] * len(chunk) if probe is None else probe.present.tolist()
            if progress:
                progress(min(start + self.max_batch, len(pairs)), len(pairs))
        results: list[list[Grounding]] = [[] for _ in images]
        for (i, phrase), text, p in zip(pairs, answers, present):
            parsed = parse_box(text)
            width, height = images[i].size
            box = None if parsed.box is None else letterbox_denormalize(parsed.box, width, height)
            results[i].append(Grounding(phrase, box, parsed.valid and not parsed.absent, text, p))
        return results

    def _grounding_request(self, batch: inputs.PromptBatch, features: torch.Tensor,
                           index: torch.Tensor) -> generation.DecodeRequest:
        """Decoding of grounding prompts `batch`; prompt b shows image `index[b]` of `features`.

        Each image's prompt start (user tag and image block, the bulk of a grounding prompt) is
        run once for all of its phrases when the prompts share one (ours always do)."""
        answer = dict(
            num_tokens=MAX_GROUNDING_TOKENS, head=generation.text_head(self.model),
            embed=generation.text_embed(self.model), stop_token=self.special.box_close,
            fill_token=self.special.pad, constrain=self.box_grammar, beams=self.grounding_beams,
            half_weights=self.half_weights,
        )
        shared = inputs.split_shared_start(batch, self.special.eoi, self.special.pad)
        if shared is None:
            return generation.DecodeRequest(
                inputs_embeds=inputs.embed_prompts(self.model, batch.input_ids, features, index, self.special.image),
                attention_mask=batch.attention_mask, **answer)
        images, start_index = index.unique(return_inverse=True)  # [N] images shown, [B] start row of each prompt
        start_ids = shared.ids.expand(len(images), -1)  # [N, P]
        return generation.DecodeRequest(
            inputs_embeds=inputs.embed_prompts(self.model, shared.rest.input_ids),
            attention_mask=shared.rest.attention_mask, start_index=start_index,
            start_embeds=inputs.embed_prompts(self.model, start_ids, features, images, self.special.image), **answer)

    # ---- layout -> image -> layout -----------------------------------------------------
    def cycle(
        self, layout: Layout, num_images: int = 1, seed: int = 0,
        sampling: SamplingConfig | None = None, progress: Progress | None = None,
    ) -> CycleResult:
        """Generate, re-ground every object, score; candidates sorted by mean IoU, best first.

        `sampling` None: the checkpoint's defaults (`self.sampling`)."""
        return self.cycles([layout], num_images, seed, sampling, progress)[0]

    def cycles(
        self, layouts: Sequence[Layout], num_images: int = 1, seed: int = 0,
        sampling: SamplingConfig | None = None, progress: Progress | None = None,
    ) -> list[CycleResult]:
        """`cycle` of several layouts in shared batches; candidate k of each is drawn with seed `seed + k`."""
        squares = [layout.resized(self.image_size, self.image_size) for layout in layouts]
        num_pictures = len(layouts) * num_images
        total = num_pictures + num_images * sum(len(layout.objects) for layout in layouts)  # images + objects
        gen = self.generate(squares, num_images, seed, sampling,
                            progress=(lambda done, _: progress(done, total)) if progress else None)
        pictures = [picture for row in gen.images for picture in row]  # [layout * num_images]
        phrases = [layout.phrases for layout in layouts for _ in range(num_images)]
        groundings = self.ground(pictures, phrases,
                                 progress=(lambda done, _: progress(num_pictures + done, total)) if progress else None)
        results = []
        for i, layout in enumerate(layouts):
            candidates = [self._scored(layout, gen.images[i][k], gen.seeds[k], groundings[i * num_images + k],
                                       gen.tokens[i, k]) for k in range(num_images)]
            candidates.sort(key=lambda c: c.score.mean_iou, reverse=True)
            results.append(CycleResult(layout, tuple(candidates)))
        return results

    @torch.no_grad()
    def compose(
        self, layouts: Sequence[Layout], num_images: int = 2, seed: int = 0,
        sampling: SamplingConfig | None = None, progress: Progress | None = None,
    ) -> list[Image.Image]:
        """One image per layout, composed object by object from `num_images` candidates
        (model.compose): each object's image-token cells come from the candidate whose drawing of
        it the model re-grounds best (the cycle check, per object instead of per image), the rest
        from the best candidate overall. With num_images 1 it is that candidate's image."""
        composed = []
        for result in self.cycles(layouts, num_images, seed, sampling, progress):
            best = result.candidates  # best mean IoU first: the base of the composition
            square = result.layout.resized(self.image_size, self.image_size)
            cells = [box_cells(box, self.image_size, self.token_grid) for box in square.boxes]
            ious = torch.tensor([[o.iou for o in c.score.objects] for c in best])  # [K, O]
            composed.append(compose_tokens(torch.stack([c.tokens for c in best]), cells, ious)[0])
        return to_pil(generation.decode_image_tokens(self.model, torch.stack(composed).to(self.device)))

    def _scored(self, layout: Layout, picture: Image.Image, seed: int, found: list[Grounding],
                tokens: torch.Tensor | None = None) -> CycleCandidate:
        """One drawing's groundings (model-size pixels) mapped to the layout's frame and scored against it."""
        sx, sy = layout.width / self.image_size, layout.height / self.image_size
        in_layout = [None if g.box is None else (g.box[0] * sx, g.box[1] * sy, g.box[2] * sx, g.box[3] * sy)
                     for g in found]
        scored = tuple(replace(g, box=b) for g, b in zip(found, in_layout))
        score = cycle_score(layout.boxes, in_layout, layout.width, layout.height, [g.valid for g in found])
        return CycleCandidate(picture, seed, scored, score, tokens)
