from transformers import AutoTokenizer

from resumo import models


def test_tiny_bert_tokenizer_has_the_corpus_vocabulary():
    tokenizer = AutoTokenizer.from_pretrained(models.resolve("tiny:bert"))
    assert len(tokenizer) > 1000  # a WordPiece vocabulary learnt from the bundled corpus, not just the specials
    tokens = tokenizer.tokenize("A cidade de Lisboa")
    assert tokenizer.unk_token not in tokens and tokens[0] == "A"  # cased, like mBERT
