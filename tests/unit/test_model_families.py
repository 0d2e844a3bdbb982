"""What differs from Qwen on a real model, on tiny random models of the real students' families:
Gemma 3 (<end_of_turn>, role `model`, eos is <eos>) and Llama (Llama 3's <|eot_id|>, no pad token)."""

import subprocess
import sys

import pandas as pd
import pytest
import torch

from resumo import generation, models, tables, train, wiki
from resumo.config import load_config
from resumo.errors import ConfigError

pytestmark = pytest.mark.numerics  # make test-kernels reruns these on other CPU kernels

TEXTS = ["O rio Tejo atravessa Lisboa e desagua no oceano Atlântico.", "O fado é um género musical de Lisboa."]
END_OF_TURN = {"gemma3": "<end_of_turn>", "llama": "<|eot_id|>"}


@pytest.fixture(scope="module", params=["gemma3", "llama"])
def family(request, tmp_path_factory):
    """A tiny random model of the family, its tokenizer trained on a few bundled articles (about a second)."""
    out = models.build_tiny_family(request.param, tmp_path_factory.mktemp(request.param), list(wiki.bundled_texts())[:8])
    return request.param, out


def test_the_family_ships_as_real_checkpoints_do(family):
    name, folder = family
    loaded = generation.load(str(folder), device="cpu")
    # The generation config names only the end of text, as Gemma's and Llama's do.
    assert loaded.model.generation_config.eos_token_id == loaded.tokenizer.eos_token_id
    assert loaded.tokenizer.convert_tokens_to_ids(END_OF_TURN[name]) != loaded.tokenizer.eos_token_id
    rendered = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "Olá"}], tokenize=False, add_generation_prompt=True)
    assert rendered.endswith("<start_of_turn>model\n" if name == "gemma3" else "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_generation_stops_at_the_templates_end_of_turn_token(family):
    name, folder = family
    loaded = generation.load(str(folder), device="cpu")
    tokenizer, model = loaded.tokenizer, loaded.model
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN[name])
    assert generation.stop_token_ids(tokenizer, model) == sorted({tokenizer.eos_token_id, end_of_turn})

    chat = [{"role": "user", "content": TEXTS[0]}]
    encoded = tokenizer(tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), return_tensors="pt", add_special_tokens=False)
    plain = model.generate(**encoded, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    third = int(plain[0, encoded["input_ids"].shape[1] + 2])
    # Make the model write the end-of-turn token by step 3: its logit becomes 3x that of the token
    # greedy decoding picked third, which wins there with a positive logit (the top one of a
    # thousand random logits), unless the end of turn already won a step before. On the logits
    # only, so the prompt (which holds the token too) is read as before.
    model.get_output_embeddings().register_forward_hook(lambda module, args, logits: logits.index_copy(-1, torch.tensor([end_of_turn]), 3 * logits[..., [third]]))
    unstopped = model.generate(**encoded, max_new_tokens=12, do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id or 0)
    new = unstopped[0, encoded["input_ids"].shape[1] :].tolist()
    assert end_of_turn in new and new.index(end_of_turn) <= 2 and len(new) == 12  # the generation config alone runs on past it

    [answer] = generation.generate_chat(loaded, [chat], batch_size=1, max_new_tokens=12)
    assert answer == tokenizer.decode(new[: new.index(end_of_turn)], skip_special_tokens=True).strip()


def test_a_model_without_a_chat_template_is_a_clear_error(tmp_path):
    folder = models.build_tiny_family("gemma3", tmp_path / "base", list(wiki.bundled_texts())[:4], chat_template=False)
    with pytest.raises(ConfigError, match=r"has no chat template.*real:gemma3-270m"):
        generation.load(str(folder), device="cpu")
    texts = tmp_path / "in.jsonl"
    pd.DataFrame({"text": TEXTS}).to_json(texts, orient="records", lines=True, force_ascii=False)
    command = [sys.executable, "-c", "from resumo.cli import main; main()", "summarize", "--model", str(folder), "--in", str(texts), "--out", str(tmp_path / "o.jsonl")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "has no chat template" in done.stderr


def test_training_learns_the_familys_end_of_turn_and_the_adapter_summarises(family, pairs_dir, tmp_path):
    name, folder = family
    cfg = load_config("smoke", [f"train.student={folder}", "train.epochs=1", "train.eval_samples=1", "train.max_new_tokens=4"]).train
    rows = train._usable_pairs(pairs_dir, "train").head(4)
    trainer = train._build_trainer(cfg, rows, rows, tmp_path / "probe")
    example = trainer.train_dataset[0]
    learned = trainer.processing_class.decode([t for t, label in zip(example["input_ids"], example["labels"]) if label != -100])
    assert learned.startswith(rows["summary"].iloc[0][:30]) and END_OF_TURN[name] in learned  # the student learns to stop
    assert trainer.processing_class.pad_token is not None  # Llama names none: eos pads

    few = tmp_path / "pairs"  # a few pairs per split: the point is the family's template, not the numbers
    for split in tables.SPLITS:
        tables.write_split(tables.read_split(pairs_dir, split).head(4 if split == "train" else 2), few, split)
    result = train.run(cfg, few, tmp_path / "model")
    loaded = generation.load(str(result.adapter_dir), device="cpu")
    assert len(generation.summarize(loaded, TEXTS, loaded.prompt, batch_size=2, max_new_tokens=4)) == 2


@torch.no_grad()
def test_an_untrained_end_of_turn_row_becomes_a_copy_of_eos_and_stays_so_when_saved(family, tmp_path):
    # What real_models does to the base Gemma. Both families here tie their embeddings, so the one
    # copied row moves the end of turn's logit too: it equals eos's at every position, and every
    # other token's logit is bit-equal to before (the text holds neither token, and one row of the
    # head does not enter another column's dot product).
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from resumo import real_models

    name, folder = family
    model, tokenizer = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    end_of_turn, eos = tokenizer.convert_tokens_to_ids(END_OF_TURN[name]), tokenizer.eos_token_id
    ids = tokenizer(TEXTS[0], return_tensors="pt")
    before = model(**ids).logits
    assert not torch.equal(before[..., end_of_turn], before[..., eos])

    real_models.copy_token_row(model, tokenizer, END_OF_TURN[name], tokenizer.eos_token)
    model.save_pretrained(tmp_path / "repaired")
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "repaired").eval()(**ids).logits
    assert torch.equal(after[..., end_of_turn], after[..., eos])
    others = torch.arange(before.shape[-1]) != end_of_turn
    assert torch.equal(after[..., others], before[..., others])

    with pytest.raises(ConfigError, match="no token '<eot>'"):
        real_models.copy_token_row(model, tokenizer, "<eot>", tokenizer.eos_token)
