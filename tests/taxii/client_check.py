#!/usr/bin/env python3
"""Third-party client check of an intelmesh node's TAXII 2.1 gateway.

Usage: client_check.py CONFIG.json, with taxii_url, taxii_user, taxii_password, taxii_ca,
reader_user and reader_password. Talks to the node with taxii2-client (and requests for raw
HTTP), reads every object back through stix2.parse and stix2-validator. Progress goes to
stderr; success prints one JSON line to stdout. Exit 1 on the first failed check, 2 when
the configuration is unusable.
"""
import ipaddress
import json
import os
import random
import re
import secrets
import sys
import uuid
from datetime import datetime, timezone
from urllib.parse import urljoin

import requests
import stix2
from stix2validator import ValidationOptions, validate_instance
from taxii2client.exceptions import AccessError
from taxii2client.v21 import ApiRoot, Collection, Server

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
TLP2 = {
    "clear": "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    "green": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "amber": "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
}
TLP1_WHITE = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
VALUE_RE = re.compile(r"([a-z0-9-]+:[A-Za-z0-9_.'-]+)\s*=\s*'((?:[^'\\]|\\.)*)'")


class CheckFailed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_ts(text):
    """An RFC 3339 UTC timestamp with any fractional precision, to microseconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text or "")
    if not m:
        raise CheckFailed(f"not a STIX/TAXII timestamp: {text!r}")
    base = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return base.replace(microsecond=int(((m.group(2) or "") + "000000")[:6]))


def now_ts():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def key(path, value):
    """(object path, value) in a form where equivalent spellings compare equal."""
    path = path.lower()
    if path.startswith("file:hashes."):
        path = "file:hashes." + path[len("file:hashes."):].replace("'", "").replace("-", "")
        value = value.lower()
    elif path in ("ipv4-addr:value", "ipv6-addr:value"):
        value = str(ipaddress.ip_network(value, strict=False)) if "/" in value \
            else str(ipaddress.ip_address(value))
    elif path in ("domain-name:value", "email-addr:value"):
        value = value.lower()
    return path, value


def pattern_values(pattern):
    return [key(p, v.replace("\\'", "'").replace("\\\\", "\\")) for p, v in VALUE_RE.findall(pattern)]


class Check:
    def __init__(self, cfg):
        self.cfg = cfg
        self.base = cfg["taxii_url"]
        self.api_url = urljoin(self.base, "../intelmesh/")
        self.ca = cfg["taxii_ca"]
        self.writer = (cfg["taxii_user"], cfg["taxii_password"])
        self.reader = (cfg["reader_user"], cfg["reader_password"])
        self.assertions = 0
        self.checks = 0
        self.validated = set()
        self.stats = {"objects_read": 0, "pages": 0, "validator_warnings": 0}
        self.collection = self.reader_collection = None
        self.posted = self.expected = self.status = None

    def expect(self, cond, msg):
        self.assertions += 1
        if not cond:
            raise CheckFailed(msg)

    def raw(self, method, url, auth="writer", **kw):
        auth = {"writer": self.writer, "reader": self.reader, None: None}[auth]
        kw.setdefault("headers", {}).setdefault("Accept", TAXII)
        return requests.request(method, url, auth=auth, verify=self.ca, timeout=30, **kw)

    def expect_error(self, resp, status, what):
        self.expect(resp.status_code == status, f"{what}: HTTP {resp.status_code}, expected {status}: {resp.text[:300]}")
        try:
            body = resp.json()
        except ValueError:
            raise CheckFailed(f"{what}: error body is not JSON: {resp.text[:300]!r}")
        self.expect(isinstance(body, dict) and body.get("title") and body.get("http_status") == str(status),
                    f"{what}: not a TAXII error (title, http_status {status!r}): {body}")

    def validate(self, objects, where):
        """stix2.parse and stix2-validator on every object not seen before."""
        for obj in objects:
            tag = (obj.get("id"), obj.get("modified") or obj.get("created"))
            if tag in self.validated:
                continue
            try:
                stix2.parse(obj, allow_custom=True)
            except Exception as e:  # noqa: BLE001 - any parse failure fails the check
                raise CheckFailed(f"{where}: stix2.parse rejects {obj.get('id')}: {e}")
            result = validate_instance(obj, ValidationOptions(version="2.1"))
            errors = [str(e) for e in result.errors]
            self.expect(result.is_valid and not errors, f"{where}: stix2-validator errors on {obj.get('id')}: {errors}")
            self.stats["validator_warnings"] += len(result.warnings or [])
            self.validated.add(tag)

    def read_all(self, get, what, **filters):
        """Every page of a paged endpoint, following `next`; (items, pages)."""
        items, pages, nxt = [], 0, None
        while True:
            page = get(**filters, **({"next": nxt} if nxt else {}))
            pages += 1
            self.expect(isinstance(page.get("more"), bool), f"{what}: page without boolean 'more': {page}")
            items.extend(page.get("objects", []))
            if not page["more"]:
                return items, pages
            nxt = page.get("next")
            self.expect(nxt, f"{what}: more is true but no next")
            self.expect(pages < 10000, f"{what}: paging does not end")

    # ---- the checks, in order ----

    def discovery(self):
        server = Server(self.base, user=self.writer[0], password=self.writer[1], verify=self.ca)
        self.expect(server.title, "discovery: no title")
        roots = [r.url for r in server.api_roots]
        self.expect(roots == [self.api_url], f"discovery: api_roots {roots}, expected [{self.api_url}]")
        self.expect(server.default and server.default.url == self.api_url, "discovery: default is not the API root")

    def api_root(self):
        root = ApiRoot(self.api_url, user=self.writer[0], password=self.writer[1], verify=self.ca)
        self.expect(root.title, "api root: no title")
        self.expect(TAXII in root.versions, f"api root: versions {root.versions} lack {TAXII}")
        self.expect(isinstance(root.max_content_length, int) and root.max_content_length > 0,
                    f"api root: max_content_length {root.max_content_length!r}")
        self.root = root

    def collections(self):
        cols = self.root.collections
        self.expect(len(cols) == 1, f"collections: {len(cols)}, expected 1")
        c = cols[0]
        self.expect(c.title == "indicators", f"collection title {c.title!r}")
        self.expect(c.can_read is True and c.can_write is True, f"writer: can_read {c.can_read}, can_write {c.can_write}")
        self.expect(c.media_types == [STIX], f"collection media_types {c.media_types}")
        reader_root = ApiRoot(self.api_url, user=self.reader[0], password=self.reader[1], verify=self.ca)
        rc = reader_root.collections
        self.expect(len(rc) == 1 and rc[0].id == c.id, "reader sees another collection list")
        self.expect(rc[0].can_read is True and rc[0].can_write is False,
                    f"reader: can_read {rc[0].can_read}, can_write {rc[0].can_write}")
        self.collection, self.reader_collection = c, rc[0]

    def build_envelope(self):
        t = secrets.token_hex(4)
        r = random.Random()
        ip6 = str(ipaddress.IPv6Address(f"2001:db8::{r.randrange(1, 0xffff):x}"))
        sha256, md5, sha1 = secrets.token_hex(32), secrets.token_hex(16), secrets.token_hex(20)
        ip_a, ip_b = f"198.51.100.{r.randrange(1, 255)}", f"192.0.2.{r.randrange(1, 255)}"
        good = [  # (pattern, marking posted, TLP expected back)
            (f"[ipv4-addr:value = '{ip_a}']", TLP2["green"], "green"),
            ("[ipv4-addr:value = '203.0.113.0/24']", TLP2["green"], "green"),
            (f"[ipv6-addr:value = '{ip6}']", TLP2["amber"], "amber"),
            (f"[domain-name:value = 'r{t}.evil.example']", TLP1_GREEN, "green"),
            (f"[url:value = 'http://r{t}.evil.example/a']", TLP2["clear"], "clear"),
            (f"[email-addr:value = 'x@r{t}.evil.example']", TLP1_WHITE, "clear"),
            (f"[file:hashes.'SHA-256' = '{sha256}']", TLP2["green"], "green"),
            (f"[file:hashes.MD5 = '{md5}']", TLP2["green"], "green"),
            (f"[file:hashes.'SHA-1' = '{sha1}']", TLP2["green"], "green"),
            (f"[ipv4-addr:value = '{ip_b}' OR domain-name:value = 'o{t}.evil.example']", TLP2["green"], "green"),
            (f"[domain-name:value = 'p{t}.evil.example'] OR [file:hashes.'SHA-256' = '{secrets.token_hex(32)}']",
             TLP2["amber"], "amber"),
        ]
        bad = [f"[process:name = 'x{t}']", "[ipv4-addr:value = '1.2.3.4' AND domain-name:value = 'a.example']"]
        ts = now_ts()

        def indicator(pattern, marking):
            return {"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
                    "created": ts, "modified": ts, "name": f"client check {t}", "pattern": pattern,
                    "pattern_type": "stix", "valid_from": ts, "object_marking_refs": [marking]}

        marking = json.loads(stix2.v21.TLP_GREEN.serialize())
        malware = {"type": "malware", "spec_version": "2.1", "id": f"malware--{uuid.uuid4()}", "created": ts,
                   "modified": ts, "name": f"check {t}", "is_family": False, "object_marking_refs": [TLP2["green"]]}
        good_objs = [indicator(p, m) for p, m, _ in good]
        bad_objs = [indicator(p, TLP2["green"]) for p in bad] + [malware]
        self.posted = {"objects": [marking] + good_objs + bad_objs}
        self.want_success = {marking["id"]} | {o["id"] for o in good_objs}
        self.want_failure = {o["id"] for o in bad_objs}
        self.expected = {v: tlp for p, _, tlp in good for v in pattern_values(p)}
        self.expect(len(self.expected) == len(good) + 2, "internal: expected values miscounted")

    def check_status(self, s, what):
        """A status resource (dict) of the posted envelope."""
        n = len(self.posted["objects"])
        self.expect(s.get("id") and s.get("status") == "complete", f"{what}: id/status {s.get('id')!r}/{s.get('status')!r}")
        for name in ("success", "failure", "pending"):
            lst = s.get(name + "es" if name == "success" else name + "s") or []
            self.expect(s.get(name + "_count") == len(lst), f"{what}: {name}_count {s.get(name + '_count')} != {len(lst)} listed")
        self.expect(s.get("total_count") == n, f"{what}: total_count {s.get('total_count')}, posted {n}")
        ok_ids = {d.get("id") for d in s.get("successes") or []}
        bad = {d.get("id"): d.get("message") for d in s.get("failures") or []}
        self.expect(ok_ids == self.want_success, f"{what}: successes lack {sorted(self.want_success - ok_ids)}, "
                    f"and list {sorted(ok_ids - self.want_success)} that should fail")
        self.expect(set(bad) == self.want_failure, f"{what}: failures lack {sorted(self.want_failure - set(bad))}, "
                    f"and list {sorted(set(bad) - self.want_failure)} that should succeed")
        self.expect(all(isinstance(m, str) and m.strip() for m in bad.values()), f"{what}: a failure without message: {bad}")

    def post(self):
        self.build_envelope()
        st = self.collection.add_objects(self.posted, wait_for_completion=False)
        s = st._raw
        self.check_status(s, "POST objects")
        log(f"  posted {len(self.posted['objects'])} objects: {s['success_count']} ok, failures: "
            + "; ".join(str(f.get("message")) for f in s.get("failures") or []))
        again = self.root.get_status(s["id"])._raw
        self.check_status(again, "GET status")
        self.expect(again["id"] == s["id"], "GET status: other id")
        self.status = s

    def repost(self):
        resp = self.raw("POST", self.collection.url + "objects/", data=json.dumps(self.posted),
                        headers={"Accept": TAXII, "Content-Type": TAXII})
        self.expect(resp.status_code == 202, f"re-POST: HTTP {resp.status_code}: {resp.text[:300]}")
        s = resp.json()
        self.check_status(s, "re-POST")
        self.expect(s["success_count"] == self.status["success_count"], "re-POST: success_count changed")

    def read_back(self):
        objs, pages = self.read_all(self.collection.get_objects, "GET objects")
        self.validate(objs, "GET objects")
        self.stats["objects_read"] = len(objs)
        self.full = objs
        by_value = {}
        for o in objs:
            if o.get("type") == "indicator":
                for v in pattern_values(o.get("pattern", "")):
                    by_value.setdefault(v, []).append(o)
        for v, tlp in self.expected.items():
            found = by_value.get(v, [])
            self.expect(found, f"read back: no indicator with {v[0]} = {v[1]!r}")
            o = found[0]
            self.expect(TLP2[tlp] in (o.get("object_marking_refs") or []),
                        f"read back {v}: object_marking_refs {o.get('object_marking_refs')}, expected TLP:{tlp.upper()}")
            self.expect(str(o.get("created_by_ref", "")).startswith("identity--"), f"read back {v}: created_by_ref {o.get('created_by_ref')!r}")
        ids = [o["id"] for o in objs]
        self.expect(len(ids) == len(set(ids)), "GET objects: an id twice")

    def headers_and_media(self):
        url = self.collection.url + "objects/"
        resp = self.raw("GET", url, params={"limit": 2})
        self.expect(resp.status_code == 200, f"GET objects raw: HTTP {resp.status_code}")
        self.expect(resp.headers.get("Content-Type", "").replace(" ", "").startswith("application/taxii+json"),
                    f"GET objects: Content-Type {resp.headers.get('Content-Type')}")
        first, last = (resp.headers.get("X-TAXII-Date-Added-" + h) for h in ("First", "Last"))
        self.expect(first and last and parse_ts(first) <= parse_ts(last), f"date-added headers: {first!r} {last!r}")
        plain = self.raw("GET", url, headers={"Accept": "application/taxii+json"})
        self.expect(plain.status_code == 200, f"Accept without version: HTTP {plain.status_code}")
        self.expect_error(self.raw("GET", url, headers={"Accept": "text/html"}), 406, "wrong Accept")
        self.expect_error(self.raw("POST", url, data=json.dumps(self.posted),
                                   headers={"Accept": TAXII, "Content-Type": "application/json"}), 415, "wrong Content-Type")

    def paging(self):
        pages, nxt, ids, second = 0, None, [], None
        while True:
            kw = {"limit": 2, **({"next": nxt} if nxt else {})}
            page = self.collection.get_objects(**kw)
            pages += 1
            got = page.get("objects", [])
            self.expect(len(got) <= 2, f"limit=2 page {pages} has {len(got)} objects")
            self.validate(got, "paged GET")
            ids += [o["id"] for o in got]
            if pages == 2:
                again = self.collection.get_objects(**kw)
                self.expect([o["id"] for o in again.get("objects", [])] == [o["id"] for o in got]
                            and again.get("more") == page.get("more"), "same next twice gave different pages")
                second = True
            if not page.get("more"):
                break
            nxt = page.get("next")
            self.expect(nxt, f"page {pages}: more without next")
            self.expect(pages < 10000, "paging does not end")
        dups = {i for i in ids if ids.count(i) > 1}
        self.expect(not dups, f"limit=2 paging repeats {sorted(dups)[:5]}")
        self.expect(set(ids) == {o["id"] for o in self.full}, "limit=2 paging: union differs from the unpaged read")
        self.expect(second or pages == 1, "paging: second page not retried")
        self.stats["pages"] = pages

    def manifest(self):
        recs, _ = self.read_all(self.collection.get_manifest, "manifest")
        for r in recs:
            self.expect(all(k in r for k in ("id", "date_added", "version", "media_type")), f"manifest record {r}")
            parse_ts(r["date_added"])
        self.expect({r["id"] for r in recs} == {o["id"] for o in self.full}, "manifest ids differ from objects ids")
        latest = {o["id"]: parse_ts(o.get("modified") or o["created"]) for o in self.full}
        for r in recs:
            self.expect(parse_ts(r["version"]) == latest[r["id"]], f"manifest version of {r['id']} {r['version']} is not the object's")
        self.manifest_recs = recs

    def added_after(self):
        recs = sorted(self.manifest_recs, key=lambda r: parse_ts(r["date_added"]))
        pivot = recs[len(recs) // 2]["date_added"]
        m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z", pivot)
        frac = (m.group(2) or "") + "000000"
        for t in {pivot, m.group(1) + "Z", f"{m.group(1)}.{frac[:1]}Z", f"{m.group(1)}.{frac[:6]}Z"}:
            cut = parse_ts(t)
            got, _ = self.read_all(self.collection.get_manifest, f"manifest added_after={t}", added_after=t)
            want = {r["id"] for r in recs if parse_ts(r["date_added"]) > cut}
            self.expect({r["id"] for r in got} == want, f"manifest added_after={t}: {len(got)} records, expected {len(want)}")
            objs, _ = self.read_all(self.collection.get_objects, f"objects added_after={t}", added_after=t)
            self.expect({o["id"] for o in objs} == want, f"objects added_after={t}: {len(objs)}, expected {len(want)}")

    def filters(self):
        s = self.collection.get_objects(type="sighting").get("objects", [])
        self.expect(all(o["type"] == "sighting" for o in s), "match[type]=sighting returned another type")
        self.validate(s, "match[type]=sighting")
        ind = self.read_all(self.collection.get_objects, "match[type]=indicator", type="indicator")[0]
        self.expect(ind and all(o["type"] == "indicator" for o in ind), "match[type]=indicator")
        one = ind[0]
        got = self.collection.get_objects(id=one["id"]).get("objects", [])
        self.expect(got and all(o["id"] == one["id"] for o in got), f"match[id]={one['id']}: {[o['id'] for o in got]}")
        sv = self.read_all(self.collection.get_objects, "match[spec_version]=2.1", spec_version="2.1")[0]
        self.expect({o["id"] for o in sv} == {o["id"] for o in self.full if o.get("spec_version") == "2.1"},
                    "match[spec_version]=2.1 selects other objects")
        self.one = one

    def object_and_versions(self):
        one = self.one
        env = self.collection.get_object(one["id"])
        objs = env.get("objects", [])
        self.expect(len(objs) == 1 and objs[0]["id"] == one["id"], f"GET object {one['id']}: {len(objs)} objects")
        self.validate(objs, "GET object")
        vers = self.collection.object_versions(one["id"]).get("versions", [])
        self.expect(vers, f"versions of {one['id']}: empty")
        stamps = sorted(parse_ts(v) for v in vers)
        self.expect(stamps[-1] == parse_ts(one.get("modified") or one["created"]), "latest version is not the object's modified")
        every = self.collection.get_object(one["id"], version="all").get("objects", [])
        self.expect(len(every) == len(vers), f"match[version]=all: {len(every)} objects for {len(vers)} versions")
        self.validate(every, "match[version]=all")
        for sel in ("first", "last", vers[-1]):
            got = self.collection.get_object(one["id"], version=sel).get("objects", [])
            self.expect(len(got) == 1, f"match[version]={sel}: {len(got)} objects")
        unknown = self.collection.url + f"objects/indicator--{uuid.uuid4()}/"
        self.expect_error(self.raw("GET", unknown), 404, "unknown object id")

    def reader_access(self):
        env = self.reader_collection.get_objects()
        self.expect(isinstance(env.get("more"), bool), "reader: GET objects is no envelope")
        self.validate(env.get("objects", []), "reader GET objects")
        try:
            self.reader_collection.add_objects(self.posted, wait_for_completion=False)
            raise CheckFailed("reader: taxii2client posted to a collection with can_write false")
        except AccessError:
            pass
        forced = Collection(self.reader_collection.url, user=self.reader[0], password=self.reader[1],
                            verify=self.ca, collection_info={**self.reader_collection._raw, "can_write": True})
        try:
            forced.add_objects(self.posted, wait_for_completion=False)
            raise CheckFailed("reader: POST objects accepted")
        except requests.HTTPError as e:
            self.expect_error(e.response, 403, "reader POST")
        self.expect_error(self.raw("POST", self.collection.url + "objects/", auth="reader", data=json.dumps(self.posted),
                                   headers={"Accept": TAXII, "Content-Type": TAXII}), 403, "reader raw POST")

    def auth(self):
        self.expect_error(self.raw("GET", self.base, auth=None), 401, "no credentials")
        self.expect_error(self.raw("GET", self.api_url + "collections/", auth=None), 401, "no credentials")
        bad = requests.get(self.api_url + "collections/", auth=(self.writer[0], self.writer[1] + "x"),
                           headers={"Accept": TAXII}, verify=self.ca, timeout=30)
        self.expect_error(bad, 401, "wrong password")

    def malformed(self):
        url = self.collection.url + "objects/"
        for params in ({"limit": "abc"}, {"added_after": "yesterday"}, {"match[version]": "bogus"}):
            self.expect_error(self.raw("GET", url, params=params), 400, f"GET objects {params}")
        self.expect_error(self.raw("GET", self.collection.url + "manifest/", params={"limit": "abc"}), 400, "manifest limit=abc")

    def too_large(self):
        # requests (under taxii2-client) sends a whole body before it reads the answer: an
        # envelope a few times max_content_length must still get the 413 that says to split it,
        # not a connection reset while it is sending.
        limit = self.root.max_content_length
        body = b'{"objects":[' + b" " * (3 * limit) + b"]}"
        resp = self.raw("POST", self.collection.url + "objects/", data=body,
                        headers={"Accept": TAXII, "Content-Type": TAXII})
        self.expect_error(resp, 413, f"POST of {len(body)} bytes (max_content_length {limit})")
        after = self.raw("GET", self.collection.url + "objects/", params={"limit": 1})
        self.expect(after.status_code == 200, f"GET after the refused POST: HTTP {after.status_code}")
        # Within the byte limit, but a million JSON values: refused before it is built in memory.
        values = b'{"objects":[' + b"0," * 1_000_000 + b"0]}"
        self.expect(len(values) < limit, f"{len(values)} bytes fit max_content_length {limit}")
        resp = self.raw("POST", self.collection.url + "objects/", data=values,
                        headers={"Accept": TAXII, "Content-Type": TAXII})
        self.expect_error(resp, 413, f"POST of {len(values)} bytes of a million JSON values")

    def run(self):
        for name in ("discovery", "api_root", "collections", "post", "repost", "read_back", "headers_and_media",
                     "paging", "manifest", "added_after", "filters", "object_and_versions", "reader_access", "auth", "malformed", "too_large"):
            log(f"check {name}")
            try:
                getattr(self, name)()
            except CheckFailed as e:
                raise CheckFailed(f"{name}: {e}")
            except Exception as e:  # noqa: BLE001 - a client exception is a failed check
                raise CheckFailed(f"{name}: {type(e).__name__}: {e}")
            self.checks += 1
        return {"ok": True, "checks": self.checks, "assertions": self.assertions, **self.stats,
                "objects_validated": len(self.validated),
                "posted": len(self.posted["objects"]), "posted_values": len(self.expected)}


def load_config(path):
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}")
    need = ("taxii_url", "taxii_user", "taxii_password", "taxii_ca", "reader_user", "reader_password")
    missing = [k for k in need if not isinstance(cfg.get(k), str) or not cfg[k]]
    if missing:
        raise ValueError(f"{path}: missing or empty {missing}")
    if not cfg["taxii_url"].startswith("https://") or not cfg["taxii_url"].endswith("/"):
        raise ValueError(f"taxii_url must be https://… ending in '/': {cfg['taxii_url']!r}")
    try:
        open(cfg["taxii_ca"], "rb").close()
    except OSError as e:
        raise ValueError(f"taxii_ca: {e}")
    return cfg


def main(argv):
    if len(argv) != 2:
        log("usage: client_check.py CONFIG.json")
        return 2
    try:
        cfg = load_config(argv[1])
    except ValueError as e:
        log(f"config unusable: {e}")
        return 2
    # requests lets these variables override a session's `verify` (which taxii2-client sets
    # from verify=taxii_ca), so they are pointed at the node's CA too.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ[var] = cfg["taxii_ca"]
    try:
        result = Check(cfg).run()
    except CheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
