#!/usr/bin/env python3
"""Small raw-HTTP helper for tests/taxii.rs: read a whole collection or post an envelope.

Usage: tool.py read  URL CA (--user U --password P | --cert C --key K) [--added-after T]
       tool.py post  URL CA --user U --password P FILE
       tool.py get   URL CA --user U --password P   (any TAXII path; prints status and body)
URL is the collection URL (read, post) or any URL (get). Prints one JSON document to stdout.
"""
import argparse
import json
import sys

import requests

TAXII = "application/taxii+json;version=2.1"


def session(a):
    s = requests.Session()
    s.verify = a.ca
    s.headers["Accept"] = TAXII
    if a.user:
        s.auth = (a.user, a.password)
    if a.cert:
        s.cert = (a.cert, a.key)
    return s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["read", "post", "get"])
    p.add_argument("url")
    p.add_argument("ca")
    p.add_argument("file", nargs="?")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--added-after")
    p.add_argument("--match-id", help="comma-separated object ids (match[id])")
    p.add_argument("--match-type", help="comma-separated object types (match[type])")
    p.add_argument(
        "--page-by-date",
        action="store_true",
        help="page with added_after set to the last X-TAXII-Date-Added-Last, never next",
    )
    a = p.parse_args()
    s = session(a)
    if a.command == "read":
        objects, nxt, pages, last = [], None, 0, None
        while True:
            params = {"limit": a.limit}
            if a.added_after:
                params["added_after"] = a.added_after
            if a.match_id:
                params["match[id]"] = a.match_id
            if a.match_type:
                params["match[type]"] = a.match_type
            if nxt:
                params["next"] = nxt
            r = s.get(a.url + "objects/", params=params, timeout=30)
            if r.status_code != 200:
                # The caller reads the status: a refusal may be what it tests.
                print(json.dumps({"status": r.status_code, "body": r.text}))
                return 0
            page = r.json()
            pages += 1
            objects += page.get("objects", [])
            last = r.headers.get("X-TAXII-Date-Added-Last", last)
            if a.page_by_date:
                if not page.get("objects"):
                    break
                a.added_after = last
                continue
            if not page.get("more"):
                break
            nxt = page["next"]
        print(json.dumps({"status": 200, "pages": pages, "objects": objects, "date_added_last": last}))
        return 0
    if a.command == "post":
        with open(a.file, encoding="utf-8") as f:
            body = f.read()
        r = s.post(a.url + "objects/", data=body, headers={"Content-Type": TAXII}, timeout=60)
        print(json.dumps({"status": r.status_code, "body": r.json()}))
        return 0
    r = s.get(a.url, timeout=30)
    print(json.dumps({"status": r.status_code, "body": r.text}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
