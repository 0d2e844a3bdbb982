"""The MediaWiki Action API and the Wikimedia pageviews API, used politely.

Wikimedia's rules (https://www.mediawiki.org/wiki/API:Etiquette): a User-Agent
with a contact, `maxlag` so we back off when the databases lag, few requests in
flight, up to 50 titles per content request, and waiting as long as a 429 or a
maxlag error's Retry-After says. Transient failures (429, 5xx, maxlag, a broken
connection, a body that is not JSON) are retried with exponential backoff and
jitter; anything else is a DataError that names the request.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timezone
from urllib.parse import quote

import requests

from resumo import __version__, fanout, wiki
from resumo.config import ApiConfig, PageviewsConfig
from resumo.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CONTACT_ENV = "RESUMO_WIKI_CONTACT"
RETRY_STATUS = {429, 500, 502, 503, 504}
CATEGORY_NS, ARTICLE_NS = 14, 0


def user_agent(contact: str | None) -> str:
    """`resumo/0.1.0 (contact) requests/2.x`, the form Wikimedia's User-Agent policy asks for."""
    contact = contact or os.environ.get(CONTACT_ENV)
    if not contact or not contact.strip():
        raise ConfigError(
            f"scrape.api.contact is not set and ${CONTACT_ENV} is empty; Wikimedia requires a contact (e-mail or URL) "
            f"in the User-Agent: export {CONTACT_ENV}=you@example.org (or mount it from a Secret)"
        )
    return f"resumo/{__version__} ({contact.strip()}) requests/{requests.__version__}"


def retry_delay(attempt: int, retry_after: str | None, backoff: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry `attempt` (0-based): backoff x 2^attempt with equal jitter,
    or the server's Retry-After if it asks for longer, never above `cap`."""
    exponential = backoff * 2**attempt
    delay = exponential / 2 + rng.uniform(0, exponential / 2)
    return min(cap, max(delay, _parse_retry_after(retry_after)))


def _parse_retry_after(value: str | None) -> float:
    # Retry-After is either delta-seconds or an HTTP date (RFC 9110 10.2.3).
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


@dataclass
class Client:
    """One HTTP session with the retry policy; `sleep` is injectable so tests never wait for real."""

    cfg: ApiConfig
    user_agent: str
    sleep: Callable[[float], None] = time.sleep
    seed: int = 0
    requests_sent: int = 0
    _session: requests.Session = field(default_factory=requests.Session, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._session.headers["User-Agent"] = self.user_agent
        self._rng = random.Random(self.seed)

    def get_json(self, url: str, params: dict | None = None, not_found_ok: bool = False) -> dict | None:
        """GET and decode, retrying transient failures; None for a 404 when `not_found_ok`."""
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            retry_after = None
            try:
                with self._lock:
                    self.requests_sent += 1
                response = self._session.get(url, params=params, timeout=self.cfg.timeout_s)
            except requests.RequestException as err:
                last = f"connection failed: {err}"
            else:
                retry_after = response.headers.get("Retry-After")
                if response.status_code == 404 and not_found_ok:
                    return None
                if response.status_code in RETRY_STATUS:
                    last = f"HTTP {response.status_code}"
                elif response.status_code != 200:
                    raise DataError(f"{response.url} answered HTTP {response.status_code}: {response.text[:200]!r}")
                else:
                    try:
                        data = response.json()
                    except ValueError:
                        last = f"invalid JSON ({response.text[:80]!r})"
                    else:
                        error = data.get("error") if isinstance(data, dict) else None
                        if not error:
                            return data
                        if error.get("code") != "maxlag":
                            raise DataError(f"{url} refused {params}: {error.get('code')}: {error.get('info')}")
                        last = f"maxlag: {error.get('info')}"
            if attempt < self.cfg.max_retries:
                delay = retry_delay(attempt, retry_after, self.cfg.backoff_s, self.cfg.max_wait_s, self._rng)
                log.warning("%s: %s; retry %d/%d in %.1fs", url, last, attempt + 1, self.cfg.max_retries, delay)
                self.sleep(delay)
        raise DataError(f"{url} failed {self.cfg.max_retries + 1} times, last: {last}; what was collected is checkpointed, rerun to resume")

    def query(self, params: dict) -> Iterator[tuple[dict, dict | None]]:
        """Action API `query` results, following `continue` until the API says it is done."""
        base = {"action": "query", "format": "json", "formatversion": "2", "maxlag": str(self.cfg.maxlag), **params}
        cont: dict = {}
        while True:
            data = self.get_json(self.cfg.base_url, {**base, **cont})
            cont = data.get("continue")
            yield data.get("query", {}), cont
            if not cont:
                return


@dataclass
class Batch:
    """Pages fetched together, and where a restart resumes listing after them."""

    pages: list[wiki.Page]
    missing: int = 0  # titles the wiki does not have
    cursor: dict | None = None


def iter_batches(client: Client, cfg: ApiConfig, skip_ids: set[int], cursor: dict | None = None) -> Iterator[Batch]:
    """Pages chosen by `cfg.pages`, fetched `batch_size` titles per request with at most
    `concurrency` requests in flight, yielded in listing order. Pages in `skip_ids` are not
    fetched again; `cursor` (from a checkpoint) resumes the listing."""
    base = wiki.api_article_base(cfg.base_url)

    def fetches():
        for stubs, next_cursor in _list_stubs(client, cfg, cursor or {}):
            batch = [s for s in stubs if s[0] not in skip_ids]
            yield next_cursor, partial(_fetch, client, batch, base) if batch else None

    pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="mediawiki")
    with closing(fanout.in_order(pool, fetches(), ahead=cfg.concurrency - 1)) as fetched:
        for next_cursor, result in fetched:
            pages, missing = result or ([], 0)
            yield Batch(pages, missing, next_cursor)


def _list_stubs(client: Client, cfg: ApiConfig, cursor: dict) -> Iterator[tuple[list[tuple[int | None, str]], dict | None]]:
    """Batches of (page id or None, title), each with the cursor that resumes after it."""
    n = cfg.batch_size
    if cfg.pages == "titles":
        for i in range(cursor.get("titles_done", 0), len(cfg.titles), n):
            yield [(None, t) for t in cfg.titles[i : i + n]], {"titles_done": min(i + n, len(cfg.titles))}
    elif cfg.pages == "all":
        if cursor.get("done"):
            return
        # A `continue` token resumes at a listing response, not inside one: batches before the
        # response's last resume by listing it again (the checkpoint skips what was done).
        params = {"list": "allpages", "apnamespace": ARTICLE_NS, "apfilterredir": "nonredirects", "aplimit": cfg.list_limit}
        start = cursor.get("continue", {})
        for result, cont in client.query({**params, **start}):
            members = [(p["pageid"], p["title"]) for p in result.get("allpages", [])]
            for i in range(0, len(members), n):
                last = i + n >= len(members)
                yield members[i : i + n], ({"continue": cont} if cont else {"done": True}) if last else {"continue": start}
            start = cont or {}
    elif cfg.pages == "random":
        yield from _random(client, cfg)
    else:
        yield from _category_tree(client, cfg)


def _random(client: Client, cfg: ApiConfig) -> Iterator[tuple[list[tuple[int, str]], None]]:
    """Random articles until scrape.max_articles stops the caller, or the wiki has no new ones to give."""
    seen: set[int] = set()
    stale = 0
    while stale < 10:
        result = next(client.query({"list": "random", "rnnamespace": ARTICLE_NS, "rnfilterredir": "nonredirects", "rnlimit": cfg.list_limit}))[0]
        fresh = [(p["id"], p["title"]) for p in result.get("random", []) if p["id"] not in seen]
        seen.update(i for i, _ in fresh)
        stale = 0 if fresh else stale + 1
        for i in range(0, len(fresh), cfg.batch_size):
            yield fresh[i : i + cfg.batch_size], None
    log.warning("list=random gave no new pages 10 times running; the wiki has no more to give")


def _category_tree(client: Client, cfg: ApiConfig) -> Iterator[tuple[list[tuple[int, str]], None]]:
    """Articles in the category and its subcategories down to `category_depth`, each once.
    Listing is cheap (500 members a request), so a restart lists again and skips by page id."""
    root = cfg.category if ":" in cfg.category else f"Categoria:{cfg.category}"
    queue, seen_categories, seen_pages = deque([(root, 0)]), {root}, set()
    while queue:
        category, depth = queue.popleft()
        params = {"list": "categorymembers", "cmtitle": category, "cmtype": "page|subcat", "cmlimit": cfg.list_limit, "cmprop": "ids|title"}
        batch: list[tuple[int, str]] = []
        for result, _ in client.query(params):
            for member in result.get("categorymembers", []):
                if member["ns"] == CATEGORY_NS and depth < cfg.category_depth and member["title"] not in seen_categories:
                    seen_categories.add(member["title"])
                    queue.append((member["title"], depth + 1))
                elif member["ns"] == ARTICLE_NS and member["pageid"] not in seen_pages:
                    seen_pages.add(member["pageid"])
                    batch.append((member["pageid"], member["title"]))
                    if len(batch) == cfg.batch_size:
                        yield batch, None
                        batch = []
        if batch:
            yield batch, None


def _fetch(client: Client, stubs: list[tuple[int | None, str]], article_base: str) -> tuple[list[wiki.Page], int]:
    """Latest revision's wikitext of up to 50 pages in one request (more if the API splits the
    content over `continue` responses); pages come back in the order asked."""
    ids = [s[0] for s in stubs]
    by_id = all(i is not None for i in ids)
    key = {"pageids": "|".join(str(i) for i in ids)} if by_id else {"titles": "|".join(s[1] for s in stubs)}
    params = {"prop": "info|revisions", "rvprop": "content|ids", "rvslots": "main", **key}
    pages: dict[int, dict] = {}
    missing, order = set(), {}
    for result, _ in client.query(params):
        for name in ("normalized", "redirects"):
            for change in result.get(name, []):
                order.setdefault(change["to"], change["from"])
        for page in result.get("pages", []):
            if page.get("missing") or page.get("invalid") or "pageid" not in page:
                missing.add(page.get("title") or page.get("pageid"))
                continue
            merged = pages.setdefault(page["pageid"], page)
            if page.get("revisions") and not merged.get("revisions"):
                merged["revisions"] = page["revisions"]
    rank = {(i if by_id else t): n for n, (i, t) in enumerate(stubs)}
    ordered = sorted(pages.values(), key=lambda p: rank.get(p["pageid"] if by_id else order.get(p["title"], p["title"]), len(rank)))
    return [_page(p, article_base) for p in ordered], len(missing)


def _page(page: dict, article_base: str) -> wiki.Page:
    revision = (page.get("revisions") or [{}])[0]
    content = ((revision.get("slots") or {}).get("main") or {}).get("content") or ""
    return wiki.Page(
        page_id=page["pageid"],
        revid=revision.get("revid", 0),
        title=page["title"],
        namespace=page.get("ns", 0),
        redirect=bool(page.get("redirect")),
        wikitext=content,
        url=wiki.article_url(article_base, page["title"]),
    )


def pageviews(client: Client, cfg: PageviewsConfig, titles: Iterable[str], concurrency: int) -> list[int]:
    """Views summed over [start, end] per title, from the REST per-article endpoint (one title
    per request: the endpoint takes no batches). A title without data (404) has 0 views."""

    def views(title: str) -> int:
        article = quote(title.replace(" ", "_"), safe="")
        url = f"{cfg.base_url.rstrip('/')}/metrics/pageviews/per-article/{cfg.project}/all-access/user/{article}/monthly/{cfg.start}/{cfg.end}"
        data = client.get_json(url, not_found_ok=True)
        return sum(int(item.get("views", 0)) for item in (data or {}).get("items", []))

    with ThreadPoolExecutor(concurrency, thread_name_prefix="pageviews") as pool:
        return list(pool.map(views, titles))



# --- what changed since the last run (scrape.cache, api.pages = all) ---------------------


@dataclass
class Changes:
    """Articles that changed since `since`: to fetch again by page id, and titles deleted (and not re-created)."""

    since: str
    changed: dict[int, str] = field(default_factory=dict)  # page id -> title
    deleted: set[str] = field(default_factory=set)
    entries: int = 0  # recentchanges entries read


def server_time(client: Client) -> str:
    """The wiki's clock (`curtimestamp`), ISO 8601: the next run lists changes from here, so our clock's skew does not matter."""
    data = client.get_json(client.cfg.base_url, {"action": "query", "format": "json", "formatversion": "2", "curtimestamp": "1", "maxlag": str(client.cfg.maxlag)})
    return data["curtimestamp"]


def recent_changes(client: Client, cfg: ApiConfig, since: str) -> Changes:
    """list=recentchanges in the article namespace from `since` on, oldest first, following `rccontinue`.

    Edits and creations name a page to fetch again; a deletion drops its title (pages deleted
    keep no page id in the log entry); a restore, move or import names a page id to fetch again.
    Later entries win: a page deleted and re-created is fetched, one edited then deleted is dropped.
    MediaWiki keeps recent changes for $wgRCMaxAge (90 days on Wikimedia wikis): a run older
    than that must list everything again (scrape_cache does)."""
    params = {
        "list": "recentchanges", "rcnamespace": ARTICLE_NS, "rcdir": "newer", "rcstart": since,
        "rctype": "edit|new|log", "rcprop": "title|ids|timestamp|loginfo", "rclimit": cfg.list_limit,
    }
    changes = Changes(since)
    for result, _ in client.query(params):
        for entry in result.get("recentchanges", []):
            changes.entries += 1
            title, page_id = entry["title"], entry.get("pageid") or 0
            if entry["type"] == "log" and entry.get("logtype") == "delete" and entry.get("logaction") in ("delete", "delete_redir"):
                changes.deleted.add(title)
                changes.changed = {i: t for i, t in changes.changed.items() if t != title}
            elif page_id:
                changes.changed[page_id] = title
                changes.deleted.discard(title)
    return changes


def changed_batches(client: Client, cfg: ApiConfig, changes: Changes, skip_ids: set[int]) -> Iterator[Batch]:
    """The changed pages' latest revisions, `batch_size` page ids a request, `concurrency` requests in flight."""
    base = wiki.api_article_base(cfg.base_url)
    stubs = [(i, t) for i, t in sorted(changes.changed.items()) if i not in skip_ids]
    pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="mediawiki")
    jobs = ((None, partial(_fetch, client, stubs[i : i + cfg.batch_size], base)) for i in range(0, len(stubs), cfg.batch_size))
    with closing(fanout.in_order(pool, jobs, ahead=cfg.concurrency - 1)) as fetched:
        for _, (pages, missing) in fetched:
            yield Batch(pages, missing)
