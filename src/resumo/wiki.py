"""Wikipedia pages: stream MediaWiki XML dumps (mwxml) and HF Parquet snapshots, clean wikitext (mwparserfromhell)."""

from __future__ import annotations

import bz2
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote
from xml.etree.ElementTree import ParseError

import mwparserfromhell
from mwparserfromhell.nodes import Comment, ExternalLink, Heading, Tag, Template, Wikilink
from mwparserfromhell.utils import parse_anything
from mwparserfromhell.wikicode import Wikicode

from resumo.errors import DataError

BUNDLED_DUMP = "ptwiki-sample-pages-articles.xml"

DISAMBIGUATION_TEMPLATES = {"desambiguação", "desambiguacao", "desambig", "dab", "disambig"}
# Sections after which an article has no prose worth summarising.
TRAILING_SECTIONS = {"referências", "referencias", "notas", "ligações externas", "links externos", "ver também", "bibliografia", "fontes", "leitura adicional", "notas e referências"}
NON_TEXT_LINK_PREFIXES = ("ficheiro:", "arquivo:", "imagem:", "file:", "image:", "categoria:", "category:", "media:")
# Inline templates that wrap prose: keep the text, drop the wrapper ({{nowrap|25 de abril de 1974}}).
INLINE_TEXT_TEMPLATES = {"nowrap": 1, "nobr": 1, "lang": 2, "smallcaps": 1, "versalete": 1}
# Tags whose content is not prose: references, tables, formulas, galleries.
DROPPED_TAGS = {"ref", "references", "table", "math", "gallery", "timeline", "imagemap", "syntaxhighlight", "score", "chem", "graph", "templatestyles"}


@dataclass(frozen=True)
class Page:
    page_id: int
    revid: int
    title: str
    namespace: int
    redirect: bool
    wikitext: str  # the page's source; plain text already when markup == "text"
    url: str
    markup: str = "wikitext"  # "text": a snapshot's text that needs no cleaning


def bundled_dump_path() -> Path:
    return Path(str(resources.files("resumo.data").joinpath(BUNDLED_DUMP)))


def iter_pages(path: str | Path) -> Iterator[Page]:
    """Stream every page of a pages-articles dump (.xml or .bz2, multistream too: bz2 reads
    concatenated streams) in constant memory."""
    import mwxml
    from mwxml.errors import MalformedXML

    path = Path(path)
    opener = bz2.open if path.suffix == ".bz2" else open
    n = 0
    try:
        with opener(path, "rb") as f:
            dump = mwxml.Dump.from_file(f)
            base = _article_base_url(dump.site_info.base)
            for page in dump:
                revision = next(iter(page), None)
                n += 1
                yield Page(
                    page_id=page.id,
                    revid=revision.id if revision else 0,
                    title=page.title,
                    namespace=page.namespace,
                    redirect=page.redirect is not None,
                    wikitext=(revision.text or "") if revision else "",
                    url=article_url(base, page.title),
                )
    except (ParseError, MalformedXML, EOFError, OSError, ValueError) as err:
        raise DataError(f"dump {path} is malformed after {n} pages: {err}; check the file is a complete MediaWiki XML export") from None


def iter_parquet_pages(paths: list[Path], batch_rows: int = 1024) -> Iterator[Page]:
    """Stream the rows of HF `wikimedia/wikipedia` Parquet files (id, url, title, text) in
    record batches, so a 1.1 M-page snapshot never sits in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for path in paths:
        try:
            parquet = pq.ParquetFile(path)
            missing = {"id", "url", "title", "text"} - set(parquet.schema_arrow.names)
            if missing:
                raise DataError(f"{path} lacks columns {sorted(missing)}; a wikimedia/wikipedia snapshot has id, url, title, text")
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=["id", "url", "title", "text"]):
                for row in batch.to_pylist():
                    yield Page(
                        page_id=int(row["id"]),
                        revid=0,  # snapshots carry no revision ids
                        title=row["title"] or "",
                        namespace=0,
                        redirect=False,
                        wikitext=unicodedata.normalize("NFC", row["text"] or ""),
                        url=row["url"] or "",
                        markup="text",
                    )
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{path} is not a readable Parquet file: {err}") from None


def article_url(base: str, title: str) -> str:
    return base + quote(title.replace(" ", "_"))


def api_article_base(api_url: str) -> str:
    """https://pt.wikipedia.org/w/api.php -> https://pt.wikipedia.org/wiki/ (the standard layout)."""
    root = api_url.split("?", 1)[0]
    root = root.removesuffix("/api.php").removesuffix("/w")
    return root.rstrip("/") + "/wiki/"


def categories(wikitext: str) -> list[str]:
    """Names of the categories a page's own wikitext puts it in (not those added by templates)."""
    return [m.group(1).strip() for m in _CATEGORY_LINK.finditer(wikitext)]


_CATEGORY_LINK = re.compile(r"\[\[\s*(?:categoria|category)\s*:\s*([^|\]]+)", re.IGNORECASE)
# A disambiguation page in plain text (snapshots drop the template): "Mercúrio pode referir-se a:".
_DISAMBIGUATION_TEXT = re.compile(r"^[^\n]{0,200}\b(pode referir-se a|pode significar|pode ser)\s*:", re.IGNORECASE)


def looks_like_disambiguation_text(text: str) -> bool:
    return bool(_DISAMBIGUATION_TEXT.match(text))


def _article_base_url(site_base: str | None) -> str:
    # siteinfo/base is the main page's URL, e.g. https://pt.wikipedia.org/wiki/Wikipédia:Página_principal
    if site_base and "/wiki/" in site_base:
        return site_base.split("/wiki/", 1)[0] + "/wiki/"
    return "https://pt.wikipedia.org/wiki/"


def parse(wikitext: str) -> Wikicode:
    """The page parsed once: parsing is most of a page's cost, and the checks below share it."""
    return mwparserfromhell.parse(wikitext)


def is_disambiguation(wikitext: str | Wikicode) -> bool:
    code = parse_anything(wikitext)
    return any(_template_name(t) in DISAMBIGUATION_TEMPLATES for t in code.filter_templates(recursive=False))


def clean_wikitext(wikitext: str | Wikicode) -> str:
    """Plain prose: templates, infoboxes, references, tables, files and categories removed,
    link text kept, headings and trailing sections (Referências, Ligações externas) dropped,
    paragraphs separated by blank lines, Unicode NFC. Parsed wikitext is changed in place."""
    code = parse_anything(wikitext)
    for template in code.filter_templates(recursive=True):
        _unwrap_inline(code, template)
    for section in code.get_sections(levels=[2]):
        heading = section.filter_headings(recursive=False)[0]
        if heading.title.strip_code().strip().lower() in TRAILING_SECTIONS:
            _remove(code, section)
    for node in code.filter(recursive=True, forcetype=(Template, Comment, Tag, Wikilink, ExternalLink, Heading)):
        if isinstance(node, (Template, Comment, Heading)):
            _remove(code, node)
        elif isinstance(node, Tag) and str(node.tag).lower() in DROPPED_TAGS:
            _remove(code, node)
        elif isinstance(node, Wikilink) and str(node.title).strip().lower().startswith(NON_TEXT_LINK_PREFIXES):
            _remove(code, node)
    text = code.strip_code(normalize=True, collapse=True)
    return _tidy(unicodedata.normalize("NFC", text))


def bundled_texts() -> Iterator[str]:
    """Clean texts of the bundled corpus's articles (to train the tiny tokenizers)."""
    for page in iter_pages(bundled_dump_path()):
        if page.namespace == 0 and not page.redirect:
            text = clean_wikitext(page.wikitext)
            if text:
                yield text


def _template_name(template: Template) -> str:
    return str(template.name).strip().lower().replace("_", " ")


def _unwrap_inline(code, template: Template) -> None:
    name = _template_name(template)
    position = INLINE_TEXT_TEMPLATES.get(name, 1 if name.startswith("lang-") else None)
    if position is not None and template.has(position):
        try:
            code.replace(template, str(template.get(position).value))
        except ValueError:  # inside a template already replaced
            pass


def _remove(code, node) -> None:
    try:
        code.remove(node)
    except ValueError:  # already gone with a removed parent
        pass


def _tidy(text: str) -> str:
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in block.splitlines()]
        # List items and leftover markup fragments become their own short lines; keep prose lines.
        kept = [line.lstrip("*#:; ").strip() for line in lines]
        kept = [line for line in kept if line and not re.fullmatch(r"[\W_]+", line)]
        if kept:
            paragraphs.append(re.sub(r"\s+([,.;:!?)])", r"\1", " ".join(kept)).replace("( ", "("))
    return "\n\n".join(paragraphs)
