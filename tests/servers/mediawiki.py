"""A MediaWiki Action API and Wikimedia pageviews REST API on 127.0.0.1, answering in the real
shapes (formatversion=2): list=allpages/random/categorymembers/recentchanges and prop=info|revisions
with `continue`, `normalized`, `missing`, a 50-title limit, `curtimestamp` from a clock of its own
(`edit`, `create` and `delete` change pages and log each as a recent change, a minute apart), and faults on demand (429 and maxlag
with Retry-After, 5xx, a body that is not JSON). It serves pages given to it, by default the
bundled corpus's, and records every request it gets.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlparse

from resumo import wiki
from tests.servers.loopback import LoopbackHTTPServer

MAX_TITLES = 50


@dataclass
class WikiPage:
    pageid: int
    title: str
    content: str
    revid: int
    ns: int = 0
    redirect: bool = False

    @property
    def categories(self) -> set[str]:
        return {f"Categoria:{c}" for c in wiki.categories(self.content)}


def bundled_pages() -> list[WikiPage]:
    return [WikiPage(p.page_id, p.title, p.wikitext, p.revid, p.namespace, p.redirect) for p in wiki.iter_pages(wiki.bundled_dump_path())]


@dataclass
class MediaWiki:
    pages: list[WikiPage]
    views: dict[str, int] = field(default_factory=dict)  # title -> views over the whole range
    revisions_per_response: int = 1000  # pages with content per response; fewer makes the API `continue`
    hold_after: int | None = None  # content requests answered before the next ones block on `release`
    faults: deque = field(default_factory=deque)  # per request in order: None or ("429" | "503" | "maxlag" | "badjson", Retry-After)
    requests: list[dict] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    api_url: str = ""
    rest_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _content_requests: int = 0
    changes: list[dict] = field(default_factory=list)  # recentchanges entries, oldest first
    clock: datetime = datetime(2026, 12, 1, tzinfo=UTC)

    # --- changing the wiki: each change is logged in recentchanges ----------------------

    def edit(self, pageid: int, content: str) -> WikiPage:
        page = next(p for p in self.pages if p.pageid == pageid)
        old, page.content, page.revid = page.revid, content, self._next_revid()
        self._log({"type": "edit", "ns": page.ns, "title": page.title, "pageid": page.pageid, "revid": page.revid, "old_revid": old})
        return page

    def create(self, title: str, content: str) -> WikiPage:
        page = WikiPage(max(p.pageid for p in self.pages) + 1, title, content, self._next_revid())
        self.pages.append(page)
        self._log({"type": "new", "ns": 0, "title": title, "pageid": page.pageid, "revid": page.revid, "old_revid": 0})
        return page

    def delete(self, title: str) -> None:
        self.pages = [p for p in self.pages if p.title != title]
        # A deletion's log entry keeps no page id (rc_cur_id is 0 once the page is gone).
        self._log({"type": "log", "ns": 0, "title": title, "pageid": 0, "revid": 0, "old_revid": 0, "logtype": "delete", "logaction": "delete", "logparams": {}})

    def _next_revid(self) -> int:
        return max(p.revid for p in self.pages) + 1

    def _log(self, entry: dict) -> None:
        self.clock += timedelta(minutes=1)
        self.changes.append({**entry, "rcid": len(self.changes) + 1, "timestamp": _iso(self.clock)})

    def content_requests(self) -> list[dict]:
        return [r for r in self.requests if r.get("prop")]

    def by_title(self) -> dict[str, WikiPage]:
        return {p.title: p for p in self.pages}

    # --- the Action API --------------------------------------------------------------

    def query(self, q: dict) -> dict:
        if q.get("curtimestamp") is not None and not q.get("prop") and not q.get("list"):
            return {"batchcomplete": True, "curtimestamp": _iso(self.clock)}
        if q.get("prop"):
            return self._revisions(q)
        kind = q.get("list")
        if kind == "recentchanges":
            return self._recentchanges(q)
        if kind == "allpages":
            return self._allpages(q)
        if kind == "random":
            return self._random(q)
        if kind == "categorymembers":
            return self._categorymembers(q)
        return {"error": {"code": "badvalue", "info": f"Unrecognized value for parameter \"list\": {kind}."}}

    def _articles(self) -> list[WikiPage]:
        return sorted((p for p in self.pages if p.ns == 0 and not p.redirect), key=lambda p: p.title.replace(" ", "_"))

    def _allpages(self, q: dict) -> dict:
        limit, start = int(q.get("aplimit", 10)), q.get("apcontinue", "")
        pages = [p for p in self._articles() if p.title.replace(" ", "_") >= start]
        out = {"batchcomplete": True, "query": {"allpages": [{"pageid": p.pageid, "ns": 0, "title": p.title} for p in pages[:limit]]}}
        if len(pages) > limit:
            out["continue"] = {"apcontinue": pages[limit].title.replace(" ", "_"), "continue": "-||"}
        return out

    def _recentchanges(self, q: dict) -> dict:
        """list=recentchanges as https://www.mediawiki.org/wiki/API:RecentChanges documents it (rcdir, rcstart, rcnamespace, rctype, rcprop, rclimit, rccontinue)."""
        direction = q.get("rcdir", "older")
        if direction not in ("older", "newer"):
            return {"error": {"code": "badvalue", "info": f"Unrecognized value for parameter \"rcdir\": {direction}."}}
        for name, allowed in (("rctype", RC_TYPES), ("rcprop", RC_PROPS)):
            unknown = set(q.get(name, "").split("|")) - allowed - {""}
            if unknown:
                return {"error": {"code": "badvalue", "info": f"Unrecognized value for parameter \"{name}\": {sorted(unknown)[0]}."}}
        limit = 500 if q.get("rclimit") == "max" else int(q.get("rclimit", 10))
        if not 1 <= limit <= 500:
            return {"error": {"code": "badinteger", "info": f"Invalid value \"{limit}\" for integer parameter \"rclimit\": must be between 1 and 500."}}
        try:
            start = _parse_ts(q["rcstart"]) if "rcstart" in q else None
            after = int(q["rccontinue"].split("|")[1]) if "rccontinue" in q else None
        except (ValueError, IndexError):
            return {"error": {"code": "badtimestamp", "info": "Invalid value for parameter \"rcstart\" or \"rccontinue\"."}}
        types = set(q.get("rctype", "|".join(sorted(RC_TYPES))).split("|"))
        namespaces = {int(n) for n in q["rcnamespace"].split("|")} if "rcnamespace" in q else None
        entries = self.changes if direction == "newer" else self.changes[::-1]
        picked = [
            e for e in entries
            if e["type"] in types and (namespaces is None or e["ns"] in namespaces)
            and (start is None or (_parse_ts(e["timestamp"]) >= start if direction == "newer" else _parse_ts(e["timestamp"]) <= start))
            and (after is None or (e["rcid"] >= after if direction == "newer" else e["rcid"] <= after))
        ]
        props = set(q.get("rcprop", "title|timestamp|ids").split("|"))
        out = {"batchcomplete": True, "query": {"recentchanges": [_rc_entry(e, props) for e in picked[:limit]]}}
        if len(picked) > limit:
            following = picked[limit]
            out["continue"] = {"rccontinue": f"{_parse_ts(following['timestamp']):%Y%m%d%H%M%S}|{following['rcid']}", "continue": "-||"}
        return out

    def _random(self, q: dict) -> dict:
        rng = random.Random(len(self.requests))
        chosen = rng.sample(self._articles(), min(int(q.get("rnlimit", 1)), len(self._articles())))
        return {"batchcomplete": True, "continue": {"rncontinue": "0.123|0.456|0|0", "continue": "-||"}, "query": {"random": [{"id": p.pageid, "ns": 0, "title": p.title} for p in chosen]}}

    def _categorymembers(self, q: dict) -> dict:
        limit, offset = int(q.get("cmlimit", 10)), int(q.get("cmcontinue", "page|0|0").rsplit("|", 1)[-1])
        members = sorted((p for p in self.pages if q["cmtitle"] in p.categories and p.ns in (0, 14)), key=lambda p: p.title)
        out = {"batchcomplete": True, "query": {"categorymembers": [{"pageid": p.pageid, "ns": p.ns, "title": p.title} for p in members[offset : offset + limit]]}}
        if len(members) > offset + limit:
            out["continue"] = {"cmcontinue": f"page|x|{offset + limit}", "continue": "-||"}
        return out

    def _revisions(self, q: dict) -> dict:
        if q.get("rvslots") != "main" or set(q.get("rvprop", "").split("|")) != {"content", "ids"}:
            return {"error": {"code": "badparams", "info": "this server answers rvprop=content|ids&rvslots=main only"}}
        by_title, by_id = self.by_title(), {p.pageid: p for p in self.pages}
        normalized, found, missing = [], [], []
        asked = q["pageids"].split("|") if "pageids" in q else q["titles"].split("|")
        if len(asked) > MAX_TITLES:
            return {"error": {"code": "toomanyvalues", "info": f"Too many values supplied for parameter \"titles\". The limit is {MAX_TITLES}."}}
        for value in asked:
            if "pageids" in q:
                page = by_id.get(int(value))
                (found.append(page) if page else missing.append({"pageid": int(value), "missing": True}))
                continue
            title = value.replace("_", " ")
            if title != value:
                normalized.append({"fromencoded": False, "from": value, "to": title})
            page = by_title.get(title)
            (found.append(page) if page else missing.append({"ns": 0, "title": title, "missing": True}))
        found.sort(key=lambda p: p.pageid)  # the API orders by page id, not as asked
        after = int(q.get("rvcontinue", "0|0").split("|")[0])
        with_content = [p for p in found if p.pageid >= after][: self.revisions_per_response]
        pages = []
        for p in found:
            page = {"pageid": p.pageid, "ns": p.ns, "title": p.title, "contentmodel": "wikitext", "pagelanguage": "pt", "lastrevid": p.revid, "length": len(p.content)}
            if p.redirect:
                page["redirect"] = True
            if p in with_content:
                page["revisions"] = [{"revid": p.revid, "parentid": p.revid - 1, "slots": {"main": {"contentmodel": "wikitext", "contentformat": "text/x-wiki", "content": p.content}}}]
            pages.append(page)
        out: dict = {"query": {"pages": missing + pages}}
        if normalized:
            out["query"]["normalized"] = normalized
        rest = [p for p in found if p.pageid >= after and p not in with_content]
        if rest:
            out["continue"] = {"rvcontinue": f"{rest[0].pageid}|{rest[0].revid}", "continue": "||"}
        else:
            out["batchcomplete"] = True
        return out

    # --- the pageviews REST API ------------------------------------------------------

    def pageviews(self, path: str) -> tuple[int, dict]:
        m = re.fullmatch(r".*/metrics/pageviews/per-article/([^/]+)/all-access/user/([^/]+)/monthly/(\d{8,10})/(\d{8,10})", path)
        title = unquote(m.group(2)).replace("_", " ") if m else None
        if title not in self.views:
            return 404, {"type": "https://mediawiki.org/wiki/HyperSwitch/errors/not_found", "title": "Not found.", "detail": "The date(s) you used are valid, but we either do not have data for those date(s), or the project you asked for is not loaded yet."}
        total, months = self.views[title], 3
        shares = [total // months + (1 if i < total % months else 0) for i in range(months)]
        items = [{"project": m.group(1), "article": m.group(2), "granularity": "monthly", "timestamp": f"20230{i + 1}0100", "access": "all-access", "agent": "user", "views": v} for i, v in enumerate(shares)]
        return 200, {"items": items}


RC_TYPES = {"edit", "new", "log", "external", "categorize"}
RC_PROPS = {"user", "userid", "comment", "parsedcomment", "flags", "timestamp", "title", "ids", "sizes", "redirect", "patrolled", "loginfo", "tags", "sha1"}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(text: str) -> datetime:
    """ISO 8601 or MediaWiki's 14 digits, both of which the API takes."""
    if re.fullmatch(r"\d{14}", text):
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _rc_entry(entry: dict, props: set[str]) -> dict:
    out = {"type": entry["type"], "ns": entry["ns"]}
    if "title" in props:
        out["title"] = entry["title"]
    if "ids" in props:
        out |= {k: entry[k] for k in ("pageid", "revid", "old_revid", "rcid")}
    if "timestamp" in props:
        out["timestamp"] = entry["timestamp"]
    if "loginfo" in props and entry["type"] == "log":
        out |= {"logid": entry["rcid"], "logtype": entry["logtype"], "logaction": entry["logaction"], "logparams": entry["logparams"]}
    return out


def _handler(wiki_: MediaWiki):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet test output
            pass

        def do_GET(self):
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            with wiki_._lock:
                wiki_.requests.append(q | {"_path": url.path})
                wiki_.user_agents.append(self.headers.get("User-Agent", ""))
                fault = wiki_.faults.popleft() if wiki_.faults else None
                hold = False
                if q.get("prop"):
                    wiki_._content_requests += 1
                    hold = wiki_.hold_after is not None and wiki_._content_requests > wiki_.hold_after
            if hold:
                wiki_.held.set()
                wiki_.release.wait(60)
            if fault:
                return self._fault(*fault)
            if "/metrics/pageviews/" in url.path:
                return self._send(*wiki_.pageviews(url.path))
            if not url.path.endswith("/api.php") or q.get("action") != "query" or q.get("format") != "json" or q.get("formatversion") != "2":
                return self._send(200, {"error": {"code": "badparams", "info": "this server answers action=query&format=json&formatversion=2"}})
            self._send(200, wiki_.query(q))

        def _fault(self, kind: str, retry_after: str | None):
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            if kind == "maxlag":
                # MediaWiki answers maxlag with HTTP 200, an error body and Retry-After.
                body = {"error": {"code": "maxlag", "info": "Waiting for 10.64.48.23: 7 seconds lagged.", "host": "10.64.48.23", "lag": 7, "type": "db"}}
                return self._send(200, body, headers | {"X-Database-Lag": "7", "MediaWiki-API-Error": "maxlag"})
            if kind == "badjson":
                return self._send(200, b"<html><body>upstream connect error</body></html>", headers)
            self._send(int(kind), {"error": {"code": "http", "info": f"HTTP {kind}"}}, headers)

        def _send(self, status: int, body, headers: dict | None = None):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def serve(pages: list[WikiPage] | None = None, **options):
    """A running server; `.api_url` and `.rest_url` point at it."""
    state = MediaWiki(pages=bundled_pages() if pages is None else pages, **options)
    with LoopbackHTTPServer(_handler(state)) as server:
        state.api_url, state.rest_url = f"{server.url}/w/api.php", f"{server.url}/api/rest_v1"
        try:
            yield state
        finally:
            state.release.set()  # release held requests before the server waits for them
