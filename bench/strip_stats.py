"""Drop the per-call times from pytest-benchmark JSON files in place, keeping each benchmark's statistics
(the files shrink about sixfold): ``python bench/strip_stats.py FILE.json ...``."""

import json
import sys

for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    for bench in doc.get("benchmarks", []):
        bench["stats"].pop("data", None)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
