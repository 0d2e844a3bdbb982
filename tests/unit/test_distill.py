import json

import pytest

from resumo import distill, prompts, tables, teachers
from resumo.config import DistillConfig, load_config
from resumo.text import words

# A usable summary: Portuguese, within the length bounds of the default config (20..200 words).
GOOD = (
    "Lisboa é a capital e a maior cidade de Portugal, situada na foz do rio Tejo. "
    "Foi reconstruída depois do terramoto de 1755 e é hoje o principal centro político, económico e cultural do país, "
    "com um porto importante e uma universidade antiga."
)


def test_extractive_teacher_takes_the_lead_sentences_nearest_n_words():
    text = "Primeira frase curta. Segunda frase também curta. Terceira frase que já não cabe no limite."  # 3, 4, 9 words
    assert teachers.lead_sentences(text, 7) == "Primeira frase curta. Segunda frase também curta."
    # 7 words are 3 short of 10 and 16 are 6 over: stop at 7. For 12, 16 (4 over) is nearer than 7 (5 short).
    assert teachers.lead_sentences(text, 10) == "Primeira frase curta. Segunda frase também curta."
    assert teachers.lead_sentences(text, 12) == text
    assert teachers.lead_sentences(text, 5) == "Primeira frase curta."  # a tie (2 short, 2 over) keeps fewer
    # A first sentence longer than the limit is cut to it.
    assert teachers.lead_sentences(text, 2) == "Primeira frase"


def test_extractive_teacher_skips_a_headline_byline_and_dateline():
    text = "Cidade ganha parque novo\nPor João Lima\nPorto, 3 de maio\nA câmara abriu hoje um parque. Tem dez hectares. Custou milhões."
    # without the skip the "lead" would be the headline and byline lines (4 + 3 words)
    assert teachers.lead_sentences(text, 8) == "A câmara abriu hoje um parque. Tem dez hectares."


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Aqui está um resumo do texto: Lisboa é a capital.<|eot_id|>", "Lisboa é a capital."),
        ("Segue o resumo:\nO rio nasce nos Andes.", "O rio nasce nos Andes."),
        ("<|im_start|>O fado é um género musical.<|im_end|>", "O fado é um género musical."),
        ("Lisboa é a capital.", "Lisboa é a capital."),
        # Llama 3's role header and end of turn, and a new turn the teacher began after it.
        ("<|start_header_id|>assistant<|end_header_id|>\n\nO Porto é uma cidade.<|eot_id|><|start_header_id|>user", "O Porto é uma cidade."),
        ("Claro! Aqui está um resumo do texto em até 100 palavras:\n\nO Porto é uma cidade.", "O Porto é uma cidade."),
        ("**Resumo:** O Porto é uma cidade.", "O Porto é uma cidade."),
        ("Resumo do texto (em 100 palavras): O Porto é uma cidade.", "O Porto é uma cidade."),
        ("Here is a summary of the text in Portuguese:\nO Porto é uma cidade.", "O Porto é uma cidade."),
        ("O Porto é uma cidade.\n\n(98 palavras)", "O Porto é uma cidade."),
        ("O Porto é uma cidade. Espero que isso ajude!", "O Porto é uma cidade."),
        ("<s>[INST] O Porto é uma cidade. [/INST]</s>", "O Porto é uma cidade."),
    ],
)
def test_clean_summary_strips_special_tokens_preambles_and_trailers(raw, clean):
    assert distill.clean_summary(raw) == clean


def test_clean_summary_keeps_a_colon_that_announces_no_summary():
    summary = "Este é um clube de futebol fundado em 1900: o Benfica, com sede em Lisboa."
    assert distill.clean_summary(summary) == summary


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("<|eot_id|>", "empty"),
        ("Aqui está um resumo do texto:", "empty"),
        ("Não há texto para resumir.", "no_text_answer"),
        ("Você não forneceu nenhum texto. Por favor, forneça o texto que deseja resumir.", "no_text_answer"),
        ("There is no text to summarize. Please provide the text.", "no_text_answer"),
        ("Desculpe, mas não posso ajudar com esse pedido porque o conteúdo viola as minhas diretrizes de uso.", "refusal"),
        ("I'm sorry, but I can't help with that request because it goes against my guidelines on content.", "refusal"),
        ("Como um modelo de linguagem, não consigo resumir este texto em português porque é demasiado longo.", "refusal"),
        (
            "Lisbon is the capital and largest city of Portugal, on the mouth of the Tagus river. "
            "It was rebuilt after the 1755 earthquake and is today the political and economic centre of the country.",
            "not_portuguese",
        ),
        (
            "Lisboa es la capital y la ciudad más grande de Portugal, situada en la desembocadura del río Tajo. "
            "Fue reconstruida después del terremoto de 1755 y hoy es el principal centro político del país.",
            "not_portuguese",
        ),
        # The prompt echoed back, as SmolLM2 served by llama.cpp answered: Portuguese, the right length.
        (
            "Você é um assistente que escreve resumos de textos em português. O resumo deverá ter no máximo 100 palavras "
            "e conter todas as informações principais do texto. Lisboa é a capital de Portugal.",
            "prompt_echo",
        ),
        ("Escreva um resumo do texto acima com no máximo 100 palavras. " + GOOD, "prompt_echo"),
        ("Lisboa é a capital de Portugal.", "too_short"),
        (" ".join([GOOD] * 5), "too_long"),
        (GOOD, None),
        ("Aqui está um resumo do texto:\n" + GOOD + "<|eot_id|>", None),
    ],
)
def test_crafted_bad_teacher_outputs_get_their_reason(raw, reason):
    assert distill.filter_reason(distill.clean_summary(raw), DistillConfig()) == reason


def test_every_reason_is_reported_even_when_zero(articles_dir):
    df = distill.read_articles(articles_dir).head(3).assign(summary="", filter_reason=[None, "too_short", "refusal"])
    counts = distill.count_reasons(df)
    assert counts["articles"] == 3 and counts["usable"] == 1
    assert counts["rejected_too_short"] == 1 and counts["rejected_refusal"] == 1
    assert {f"rejected_{r}" for r in distill.REASONS} <= set(counts)
    assert sum(counts[f"rejected_{r}"] for r in distill.REASONS) == 2


def test_distill_keeps_every_article_and_labels_it(articles_dir, pairs_dir, smoke_config):
    for split in tables.SPLITS:
        articles = tables.read_split(articles_dir, split)
        pairs = tables.read_split(pairs_dir, split)
        assert list(pairs["id"]) == list(articles["id"])
        assert set(pairs["teacher"]) == {"extractive-lead"}
        assert set(pairs["prompt_version"]) == {"pt-v1"}
        usable = pairs[pairs["filter_reason"].isna()]
        assert len(usable) >= 0.9 * len(pairs)
        # The lead nearest n_words: under 2 x n_words, and on average near it (the corpus's sentences average 24 words).
        lengths = [len(words(s)) for s in usable["summary"]]
        assert max(lengths) < 2 * smoke_config.distill.prompt.n_words
        assert abs(sum(lengths) / len(lengths) - smoke_config.distill.prompt.n_words) < 0.25 * smoke_config.distill.prompt.n_words
        assert all(text.startswith(summary[:20]) for text, summary in zip(usable["text"], usable["summary"]))


def test_rejected_rows_stay_with_their_reason(articles_dir):
    # Leads near 40 words, of which at least 38 are required: some pass, the rest are kept as too_short.
    cfg = load_config("smoke", ["distill.min_words=38"]).distill
    articles = distill.read_articles(articles_dir)
    pairs, counts = distill.distill_articles(cfg, articles)
    assert list(pairs["id"]) == list(articles["id"])
    short = pairs[pairs["filter_reason"] == "too_short"]
    assert 0 < len(short) < len(pairs) and counts["rejected_too_short"] == len(short)
    assert all(len(words(s)) < 38 for s in short["summary"])
    assert counts["usable"] + sum(counts[f"rejected_{r}"] for r in distill.REASONS) == len(articles)


def test_a_run_without_one_usable_training_summary_fails_clearly(articles_dir, tmp_path):
    cfg = load_config("smoke", ["distill.min_words=500"]).distill
    with pytest.raises(distill.DataError, match="every training summary was rejected"):
        distill.run(cfg, articles_dir, tmp_path / "pairs")


def test_shards_partition_the_articles_and_merge_back_in_order(articles_dir, pairs_dir, tmp_path):
    cfg = load_config("smoke", ["distill.shards=3"]).distill
    parts = [tmp_path / f"shard-{i}" for i in range(3)]
    sizes = [distill.run_stage(cfg, articles_dir, part, i).metrics["articles"] for i, part in enumerate(parts)]
    assert sum(sizes) == len(distill.read_articles(articles_dir)) and all(sizes)
    result = distill.merge(articles_dir, parts, tmp_path / "merged")
    for split in tables.SPLITS:
        merged, whole = tables.read_split(tmp_path / "merged", split), tables.read_split(pairs_dir, split)
        assert merged.drop(columns=["raw_summary"]).equals(whole.drop(columns=["raw_summary"]))
    assert result.counts["usable"] == sum(tables.read_split(pairs_dir, s)["filter_reason"].isna().sum() for s in tables.SPLITS)
    # A lost shard is an error, not a smaller dataset.
    with pytest.raises(distill.DataError, match="missing"):
        distill.merge(articles_dir, parts[:2], tmp_path / "short")


def test_the_cli_runs_one_shard_and_prints_its_counts(articles_dir, tmp_path):
    from typer.testing import CliRunner

    from resumo.cli import app

    done = CliRunner().invoke(app, ["distill", "--articles", str(articles_dir), "--out", str(tmp_path / "shard"), "--shard", "1", "--set", "distill.shards=2"])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed == distill.read_counts(tmp_path / "shard") and 0 < printed["articles"] < len(distill.read_articles(articles_dir))


def test_shard_assignment_is_stable():
    ids = [f"{i}-{i * 7}" for i in range(200)]
    assert [distill.shard_of(i, 4) for i in ids] == [distill.shard_of(i, 4) for i in ids]
    assert set(distill.shard_of(i, 4) for i in ids) == {0, 1, 2, 3}


def test_transformers_teacher_runs_the_shared_generation(articles_dir):
    cfg = load_config("smoke", ["distill.teacher.backend=transformers", "distill.teacher.model=tiny:qwen2", "distill.teacher.max_new_tokens=8"]).distill
    teacher = distill.make_teacher(cfg.teacher, cfg.prompt)
    texts = list(tables.read_split(articles_dir, "test")["text"])[:3]
    summaries = teacher.generate(texts)
    assert len(summaries) == 3 and all(isinstance(s, str) for s in summaries)
    assert teacher.name == distill.teacher_name(cfg.teacher) == "transformers:tiny:qwen2"


# A prompt's wording is frozen once released: a new wording is a new version (and a new cache key).
RELEASED_PROMPTS = {"pt-v1": "a88f6434e11c"}


def test_released_prompts_are_not_edited_in_place():
    for version, digest in RELEASED_PROMPTS.items():
        assert prompts.PROMPTS[version].sha256.startswith(digest), f"{version} changed: add a new version instead"


def test_default_prompt_says_what_the_original_study_said():
    text = prompts.PROMPTS["pt-v1"].render("O texto.", 100)
    assert "resumos de textos em português" in text and text.count("no máximo 100 palavras") == 2
    assert "informações principais" in text and "O texto." in text


def test_no_bundled_article_reads_as_an_echo_of_the_prompt(smoke_config):
    """An extractive summary copies its article: the echo check must find none in the corpus's own words."""
    from resumo import wiki

    assert not any(distill.echoes_prompt(text, smoke_config.distill) for text in wiki.bundled_texts())
