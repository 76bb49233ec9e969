"""Scrapes a node's /metrics and parses it with prometheus-client's OpenMetrics parser (the
reference Python implementation), so the exposition is checked by a third party.

usage: scrape.py URL
Prints one JSON object: {"samples": [[name, {labels}, value], ...], "types": {family: type}}.
A line the parser refuses fails with its message (exit 1).
"""

import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as response:
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode("utf-8")
    if not content_type.startswith("application/openmetrics-text"):
        sys.exit(f"unexpected Content-Type {content_type!r}")
    samples, types = [], {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples.append([s.name, s.labels, s.value])
    json.dump({"samples": samples, "types": types}, sys.stdout)


if __name__ == "__main__":
    main()
