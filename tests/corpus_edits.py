"""The bundled dump a week later: some articles edited (a new revision), some added, some deleted.

Works on the export's XML text, page by page, so the rest of each page stays byte-identical."""

from __future__ import annotations

import re
from pathlib import Path

from resumo import wiki

EDIT = " Em 2026 o artigo foi revisto, e esta frase nova entrou no primeiro parágrafo."
_PAGE = re.compile(r"  <page>\n.*?</page>\n", re.DOTALL)


def week_later(out: Path, edited: list[int], added: int, deleted: list[int] = ()) -> tuple[Path, list[int]]:
    """Write the edited dump to `out`; return it and the new pages' ids. An edited page gets a
    new revision id and a sentence in its first paragraph; an added page is the first paragraph
    after the first heading of six other articles, so it is no near-duplicate of any of them."""
    xml = wiki.bundled_dump_path().read_text(encoding="utf-8")
    pages = _PAGE.findall(xml)
    ids = [int(re.search(r"<id>(\d+)</id>", p).group(1)) for p in pages]
    body = []
    for page_id, page in zip(ids, pages):
        if page_id in deleted:
            continue
        body.append(_edited(page) if page_id in edited else page)
    sources = [p for p, i in zip(pages, ids) if i not in edited and i not in deleted and _section_paragraph(p)]
    new_ids = [max(ids) + 1 + k for k in range(added)]
    for k, page_id in enumerate(new_ids):
        paragraphs = [_section_paragraph(p) for p in sources[6 * k : 6 * k + 6]]
        body.append(_new_page(page_id, f"Artigo novo {k + 1}", "\n\n".join(paragraphs)))
    head, tail = xml[: xml.index("  <page>")], xml[xml.rindex("</page>\n") + len("</page>\n") :]
    out.write_text(head + "".join(body) + tail, encoding="utf-8")
    return out, new_ids


def _edited(page: str) -> str:
    page = re.sub(r"(<revision>\s*<id>)(\d+)", lambda m: m.group(1) + str(int(m.group(2)) + 7), page, count=1)
    # The first line of prose (it starts with the bold title) gets the new sentence.
    return re.sub(r"^('''.*)$", lambda m: m.group(1) + EDIT, page, count=1, flags=re.MULTILINE)


def _section_paragraph(page: str) -> str | None:
    match = re.search(r"^== [^=\n]+ ==\n(.+)$", page, re.MULTILINE)
    return match.group(1) if match and "<ns>0</ns>" in page else None


def _new_page(page_id: int, title: str, text: str) -> str:
    return (
        f"  <page>\n    <title>{title}</title>\n    <ns>0</ns>\n    <id>{page_id}</id>\n    <revision>\n      <id>{70000000 + page_id}</id>\n"
        f"      <timestamp>2026-11-30T12:00:00Z</timestamp>\n      <contributor>\n        <username>Resumo</username>\n        <id>1</id>\n      </contributor>\n"
        f'      <model>wikitext</model>\n      <format>text/x-wiki</format>\n      <text bytes="{len(text.encode())}" xml:space="preserve">{text}</text>\n'
        f"    </revision>\n  </page>\n"
    )
