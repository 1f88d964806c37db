"""What trains: LoRA on the language model only, float32 trainables, --full keeps the VQ frozen."""

import pytest
import torch

from model.loading import load_janus
from train.config import LoraSettings, ModelConfig
from train.lora import describe, freeze_understanding, frozen_copy, make_trainable, trainable_parameters


def trainable_names(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_lora_targets_only_the_language_model(tiny_janus_dir):
    model, processor = load_janus(tiny_janus_dir, dtype="bfloat16")
    peft_model = make_trainable(model, ModelConfig(dtype="bfloat16"), LoraSettings(r=4, alpha=8), processor.tokenizer)
    names = trainable_names(peft_model)
    assert names and all("lora_" in n and ".language_model.layers." in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                  "down_proj"}
    assert all(p.dtype == torch.float32 for p in trainable_parameters(peft_model))  # upcast; base stays bf16
    assert peft_model.base_model.model.lm_head.weight.dtype == torch.bfloat16
    assert "%" in describe(peft_model)


def test_layout_token_rows_and_modules_to_save(tiny_janus_dir):
    model, processor = load_janus(tiny_janus_dir)
    lora = LoraSettings(r=4, alpha=8, train_layout_tokens=True, modules_to_save=["generation_head"])
    names = trainable_names(make_trainable(model, ModelConfig(), lora, processor.tokenizer))
    assert sum("trainable_tokens_delta" in n for n in names) == 2  # embed_tokens and lm_head rows
    assert any("generation_head.modules_to_save" in n for n in names)


def test_a_regex_that_matches_nothing_is_an_error(tiny_janus_dir):
    model, processor = load_janus(tiny_janus_dir)
    with pytest.raises(ValueError, match="matched no module"):
        make_trainable(model, ModelConfig(), LoraSettings(target_modules=r"nothing\.here"), processor.tokenizer)


@pytest.mark.parametrize("train_vision", [True, False])
def test_full_training_keeps_the_vq_frozen(tiny_janus_dir, train_vision):
    model, processor = load_janus(tiny_janus_dir)
    model = make_trainable(model, ModelConfig(full=True, train_vision=train_vision), LoraSettings(), processor.tokenizer)
    names = trainable_names(model)
    assert not any(n.startswith("model.vqmodel.") for n in names)
    assert any(n.startswith("model.generation_head.") for n in names) and "lm_head.weight" in names
    assert any(n.startswith("model.vision_model.") for n in names) == train_vision
    freeze_understanding(model)
    names = trainable_names(model)
    assert not any(n.startswith(("model.vision_model.", "model.aligner.", "lm_head.")) for n in names)
    assert any(n.startswith("model.generation_aligner.") for n in names)


def test_frozen_copy_is_independent(tiny_janus_dir):
    model, _ = load_janus(tiny_janus_dir)
    reference = frozen_copy(model)
    assert not reference.training and not any(p.requires_grad for p in reference.parameters())
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    assert not torch.equal(model.lm_head.weight, reference.lm_head.weight)
