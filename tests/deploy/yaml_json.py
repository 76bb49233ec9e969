"""Prints the YAML documents of each file given as one JSON object: {path: [document, ...]}.

tests/deploy.rs reads manifests and the compose file through it (PyYAML, pinned by
scripts/python-deps.sh), so the Rust side checks their structure without a YAML parser of
its own. Merge keys (`<<: *anchor`) are resolved, as compose resolves them.
"""

import json
import sys

import yaml

out = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        out[path] = [doc for doc in yaml.safe_load_all(f) if doc is not None]
print(json.dumps(out))
