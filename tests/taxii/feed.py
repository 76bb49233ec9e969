#!/usr/bin/env python3
"""A TAXII feed for tests/taxii_crash.rs: posts envelopes of indicators one after another, as a
feed built on requests (the library under taxii2-client) does, and records each answer.

Usage: feed.py COLLECTION_URL CA USER PASSWORD FIRST COUNT SIZE LOG
Posts envelopes FIRST .. FIRST+COUNT-1; envelope I holds SIZE domain indicators,
`f<I>-<J>.crash.example`. After each answer it appends a line to LOG and flushes it:
`ack I SUCCESS_COUNT` for a 202, `refused I STATUS` otherwise. At the first connection error it
appends `lost I` and stops. Prints one JSON line at the end: {"acked": [...], "lost": I or null}.
"""
import json
import os
import sys

import requests

TAXII = "application/taxii+json;version=2.1"


def envelope(i, size):
    objects = []
    for j in range(size):
        objects.append({
            "type": "indicator", "spec_version": "2.1",
            "id": f"indicator--{i:08x}-{j:04x}-4000-8000-000000000000",
            "created": "2026-12-01T00:00:00.000Z", "modified": "2026-12-01T00:00:00.000Z",
            "pattern": f"[domain-name:value = 'f{i}-{j}.crash.example']",
            "pattern_type": "stix", "valid_from": "2026-12-01T00:00:00Z",
            "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
        })
    return json.dumps({"objects": objects})


def main(argv):
    url, ca, user, password, first, count, size, log_path = argv[1:9]
    first, count, size = int(first), int(count), int(size)
    s = requests.Session()
    s.verify = ca
    s.auth = (user, password)
    s.headers.update({"Accept": TAXII, "Content-Type": TAXII})
    acked, lost = [], None
    with open(log_path, "a", encoding="utf-8") as log:
        for i in range(first, first + count):
            try:
                r = s.post(url + "objects/", data=envelope(i, size), timeout=60)
            except requests.exceptions.RequestException:
                lost = i
                log.write(f"lost {i}\n")
                break
            if r.status_code == 202:
                acked.append(i)
                log.write(f"ack {i} {r.json().get('success_count')}\n")
            else:
                log.write(f"refused {i} {r.status_code}\n")
            log.flush()
            os.fsync(log.fileno())
    print(json.dumps({"acked": acked, "lost": lost}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
