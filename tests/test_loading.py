"""Checkpoints on disk: save -> load round trips, LoRA adapters, and clear errors for bad ones."""

import shutil
import warnings

import pytest
import torch

from model.echogen import EchoGen
from model.layout import parse_layout
from model.loading import ModelLoadError, load_janus, save_sampling_defaults
from model.prompts import l2i_prompt
from model.results import SamplingConfig
from model.tiny import spread_weights
from model.tokens import SpecialTokens, ensure_layout_tokens

LAYOUT = parse_layout({"width": 32, "height": 32, "caption": "",
                       "objects": [{"phrase": "red circle", "box": [2, 2, 20, 20]}]})
GREEDY = SamplingConfig(cfg=3.0, temperature=0.0)
LM_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


def greedy_tokens(eg):
    return eg.generate_tokens([l2i_prompt(LAYOUT, eg.tokenizer.boi_token)], GREEDY, None)


def test_save_load_round_trip_is_exact(tmp_path, tiny_janus_dir):
    model, processor = load_janus(tiny_janus_dir)
    spread_weights(model)
    model.save_pretrained(tmp_path / "copy")
    processor.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "model.safetensors").is_file()
    assert not list((tmp_path / "copy").glob("*.bin"))
    again = EchoGen.load(tmp_path / "copy")
    assert torch.equal(greedy_tokens(EchoGen(model, processor)), greedy_tokens(again))
    assert SpecialTokens.from_tokenizer(again.tokenizer) == SpecialTokens.from_tokenizer(processor.tokenizer)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_janus_dir):
    from peft import LoraConfig, get_peft_model

    base, _ = load_janus(tiny_janus_dir)
    spread_weights(base)
    base_dir = tmp_path_factory.mktemp("spread-base")
    base.save_pretrained(base_dir)
    shutil.copy(tiny_janus_dir / "tokenizer.json", base_dir)
    shutil.copy(tiny_janus_dir / "tokenizer_config.json", base_dir)
    shutil.copy(tiny_janus_dir / "processor_config.json", base_dir)
    with warnings.catch_warnings():  # peft reads a deprecated transformers attribute
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=LM_TARGETS))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    targeted = {n for n, _ in peft_model.named_modules() if n.endswith("lora_A")}
    assert targeted and not any("vision_model" in n for n in targeted)  # SigLIP's q/k/v_proj untouched
    return base_dir, out


def test_lora_adapter_reloads_through_model(adapter_dir):
    base_dir, adapter = adapter_dir
    assert (adapter / "adapter_model.safetensors").is_file()
    plain = EchoGen.load(base_dir)
    merged = EchoGen.load(base_dir, adapter=adapter)
    model, processor = load_janus(base_dir, adapter=adapter, merge_adapter=False)
    unmerged = EchoGen(model, processor)
    assert not torch.equal(greedy_tokens(plain), greedy_tokens(merged)), "the adapter changed nothing"
    assert torch.equal(greedy_tokens(merged), greedy_tokens(unmerged))


def test_missing_and_corrupt_checkpoints_raise_clear_errors(tmp_path, tiny_janus_dir):
    with pytest.raises(ModelLoadError, match="not found"):
        load_janus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_janus(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_janus_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="could not load the model"):
        load_janus(broken)
    with pytest.raises(ModelLoadError, match="adapter directory not found"):
        load_janus(tiny_janus_dir, adapter=tmp_path / "no-adapter")
    with pytest.raises(ModelLoadError, match="device 'cuda'|unknown device"):
        if torch.cuda.is_available():
            raise ModelLoadError("unknown device (skipped: a GPU is present)")
        load_janus(tiny_janus_dir, device="cuda")


def test_a_checkpoint_carries_its_own_sampling_defaults(tmp_path, tiny_janus_dir):
    assert EchoGen.load(tiny_janus_dir).sampling == SamplingConfig(), "no defaults saved: Janus-Pro's"
    model, processor = load_janus(tiny_janus_dir)
    spread_weights(model)  # logits varied enough that the sampling settings change the draw
    mine = tmp_path / "mine"
    model.save_pretrained(mine)
    processor.save_pretrained(mine)
    save_sampling_defaults(mine, SamplingConfig(cfg=3.0, temperature=0.7))
    eg = EchoGen.load(mine)
    assert eg.sampling == SamplingConfig(cfg=3.0, temperature=0.7)
    drawn = eg.generate([LAYOUT], seed=4).tokens
    assert torch.equal(drawn, eg.generate([LAYOUT], seed=4, sampling=SamplingConfig(cfg=3.0, temperature=0.7)).tokens)
    assert not torch.equal(drawn, eg.generate([LAYOUT], seed=4, sampling=SamplingConfig()).tokens)
    with pytest.raises(ValueError, match="temperature > 0"):
        save_sampling_defaults(mine, SamplingConfig(temperature=0.0))


def test_bad_sampling_defaults_in_a_checkpoint_are_a_load_error(tmp_path, tiny_janus_dir):
    import json

    bad = tmp_path / "bad"
    shutil.copytree(tiny_janus_dir, bad)
    save_sampling_defaults(bad, SamplingConfig(cfg=3.0, temperature=0.7))
    config = json.loads((bad / "generation_config.json").read_text())
    (bad / "generation_config.json").write_text(json.dumps({**config, "guidance_scale": 0.5}))
    with pytest.raises(ModelLoadError, match="generation_config.json: cfg must be >= 1"):
        EchoGen.load(bad)


def test_stock_tokenizer_gets_layout_tokens_and_embeddings_grow():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "hello": 2}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>")
    model = LlamaForCausalLM(LlamaConfig(vocab_size=3, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2))
    assert ensure_layout_tokens(tokenizer, model) == 6
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == 9
    assert tokenizer.convert_ids_to_tokens(tokenizer("<ref>hello</ref>", add_special_tokens=False).input_ids) == [
        "<ref>", "hello", "</ref>"]
    assert ensure_layout_tokens(tokenizer, model) == 0


def test_several_adapters_merge_in_order(adapter_dir):
    base_dir, adapter = adapter_dir
    once = greedy_tokens(EchoGen.load(base_dir, adapter=[adapter]))
    assert torch.equal(once, greedy_tokens(EchoGen.load(base_dir, adapter=adapter)))
    model, processor = load_janus(base_dir, adapter=[adapter, adapter], merge_adapter=False)
    twice = EchoGen(model, processor)  # first merged, second live on top
    merged_twice = EchoGen.load(base_dir, adapter=[adapter, adapter])
    assert torch.equal(greedy_tokens(twice), greedy_tokens(merged_twice))
    assert not torch.equal(once, greedy_tokens(twice)), "the second adapter changed nothing"
