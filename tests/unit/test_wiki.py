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
