import bz2

import pytest

from resumo import wiki
from resumo.errors import DataError

ARTICLE = """{{Info/Futebolista
| nome = Eusébio
| clube = [[Sport Lisboa e Benfica|Benfica]]
}}
'''Eusébio da Silva Ferreira''' ({{nowrap|Lourenço Marques, 25 de janeiro de 1942}}) foi um [[futebol]]ista \
{{lang|en|''The Black Panther''}} do [[Sport Lisboa e Benfica|Benfica]].<ref name="a">{{citar web|url=https://example.org}}</ref>

{| class="wikitable"
! Época !! Golos
|-
| 1965 || 46
|}

== Carreira ==
[[Ficheiro:Eusebio.jpg|thumb|Eusébio em 1963]]
Marcou nove golos no [[Campeonato do Mundo de Futebol de 1966|Mundial de 1966]].<ref name="a" /><!-- rever -->

== Referências ==
{{Referências}}

[[Categoria:Futebolistas de Portugal]]
"""


def test_clean_keeps_prose_and_link_text_and_drops_markup():
    text = wiki.clean_wikitext(ARTICLE)
    assert text == (
        "Eusébio da Silva Ferreira (Lourenço Marques, 25 de janeiro de 1942) foi um futebolista The Black Panther do Benfica."
        "\n\nMarcou nove golos no Mundial de 1966."
    )


def test_clean_is_nfc():
    decomposed = "Ac\u0327a\u0303o e\u0301 uma palavra."  # 'Ação é' with combining marks
    assert wiki.clean_wikitext(decomposed) == "Ação é uma palavra."


@pytest.mark.parametrize("template", ["{{Desambiguação}}", "{{desambig}}", "{{ Disambig }}"])
def test_disambiguation_pages_are_recognised(template):
    assert wiki.is_disambiguation(f"'''Mercúrio''' pode referir-se a:\n* [[Mercúrio (planeta)]]\n{template}")
    assert not wiki.is_disambiguation(ARTICLE)


def test_bundled_dump_has_the_promised_shape():
    pages = list(wiki.iter_pages(wiki.bundled_dump_path()))
    articles = [p for p in pages if p.namespace == 0 and not p.redirect and not wiki.is_disambiguation(p.wikitext)]
    lengths = [len(wiki.clean_wikitext(p.wikitext).split()) for p in articles]
    assert sum(150 <= n <= 1500 for n in lengths) >= 60
    assert sum(p.redirect for p in pages) >= 3
    assert any(p.namespace != 0 for p in pages)
    assert all(p.url.startswith("https://pt.wikipedia.org/wiki/") for p in pages)
    assert len({p.page_id for p in pages}) == len(pages)


def test_bz2_dump_streams_like_xml(tmp_path):
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(wiki.bundled_dump_path().read_bytes()))
    assert [p.title for p in wiki.iter_pages(path)] == [p.title for p in wiki.iter_pages(wiki.bundled_dump_path())]


def test_malformed_dump_is_a_clear_error(tmp_path):
    text = wiki.bundled_dump_path().read_text(encoding="utf-8")
    broken = tmp_path / "broken.xml"
    broken.write_text(text[: len(text) // 2] + "<page><title>x</ti", encoding="utf-8")
    with pytest.raises(DataError, match="malformed after"):
        list(wiki.iter_pages(broken))


def test_multistream_bz2_dump_streams_every_page(tmp_path):
    # pages-articles-multistream: the same XML compressed as many concatenated bz2 streams.
    data = wiki.bundled_dump_path().read_bytes()
    cut = [0, 40_000, 150_000, len(data)]
    path = tmp_path / "ptwiki-pages-articles-multistream.xml.bz2"
    path.write_bytes(b"".join(bz2.compress(data[a:b]) for a, b in zip(cut, cut[1:])))
    assert [p.page_id for p in wiki.iter_pages(path)] == [p.page_id for p in wiki.iter_pages(wiki.bundled_dump_path())]


def multistream(data: bytes, size: int = 20_000) -> bytes:
    return b"".join(bz2.compress(data[i : i + size]) for i in range(0, len(data), size))


def test_truncated_bz2_is_a_clear_error(tmp_path):
    data = multistream(wiki.bundled_dump_path().read_bytes())  # small streams: the part before the cut decodes
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(data[: len(data) // 2])
    pages = []
    with pytest.raises(DataError, match="malformed after"):
        for page in wiki.iter_pages(path):
            pages.append(page)
    assert pages  # what was read before the cut came through


def test_categories_and_urls():
    assert wiki.categories("x\n[[Categoria:Rios de Portugal|Douro]]\n[[category: Rivers]]") == ["Rios de Portugal", "Rivers"]
    assert wiki.api_article_base("https://pt.wikipedia.org/w/api.php") == "https://pt.wikipedia.org/wiki/"
    assert wiki.article_url("https://pt.wikipedia.org/wiki/", "São Paulo") == "https://pt.wikipedia.org/wiki/S%C3%A3o_Paulo"
