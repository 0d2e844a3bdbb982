import pytest

from resumo import distill, tables
from resumo.config import DistillConfig, load_config
from resumo.text import words


def test_extractive_teacher_takes_whole_lead_sentences():
    text = "Primeira frase curta. Segunda frase também curta. Terceira frase que já não cabe no limite."
    assert distill.lead_sentences(text, 7) == "Primeira frase curta. Segunda frase também curta."
    # A first sentence longer than the limit is cut to it.
    assert distill.lead_sentences(text, 2) == "Primeira frase"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Aqui está um resumo do texto: Lisboa é a capital.<|eot_id|>", "Lisboa é a capital."),
        ("Segue o resumo:\nO rio nasce nos Andes.", "O rio nasce nos Andes."),
        ("<|im_start|>O fado é um género musical.<|im_end|>", "O fado é um género musical."),
        ("Lisboa é a capital.", "Lisboa é a capital."),
    ],
)
def test_clean_summary_strips_special_tokens_and_preambles(raw, clean):
    assert distill.clean_summary(raw) == clean


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        ("", "empty"),
        ("Não há texto para resumir.", "no_text_answer"),
        ("Curto demais.", "too_short"),
        ("palavra " * 250, "too_long"),
        ("palavra " * 50, None),
    ],
)
def test_filter_reason(summary, reason):
    assert distill.filter_reason(summary, DistillConfig()) == reason


def test_distill_keeps_every_article_and_labels_it(articles_dir, pairs_dir, smoke_config):
    for split in tables.SPLITS:
        articles = tables.read_split(articles_dir, split)
        pairs = tables.read_split(pairs_dir, split)
        assert list(pairs["id"]) == list(articles["id"])
        assert set(pairs["teacher"]) == {"extractive-lead"}
        assert set(pairs["prompt_version"]) == {"pt-v1"}
        usable = pairs[pairs["filter_reason"].isna()]
        assert len(usable) >= 0.9 * len(pairs)
        assert all(len(words(s)) <= smoke_config.distill.prompt.n_words for s in usable["summary"])
        assert all(text.startswith(summary[:20]) for text, summary in zip(usable["text"], usable["summary"]))


def test_transformers_teacher_runs_the_shared_generation(articles_dir, tmp_path):
    cfg = load_config("smoke", ["distill.teacher.backend=transformers", "distill.teacher.model=tiny:qwen2", "distill.teacher.max_new_tokens=8"]).distill
    teacher = distill.make_teacher(cfg.teacher)
    texts = list(tables.read_split(articles_dir, "test")["text"])[:3]
    summaries = teacher(texts, cfg)
    assert len(summaries) == 3 and all(isinstance(s, str) for s in summaries)
    assert distill.teacher_name(cfg.teacher) == "transformers:tiny:qwen2"
