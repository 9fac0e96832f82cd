"""pytest-benchmark JSON -> benchmarks/RESULTS.md (``make bench`` runs it)."""
from __future__ import annotations

import json
import sys


def main(path: str) -> int:
    d = json.load(open(path))
    m = d["machine_info"]
    out = ["# Benchmark results", "",
           f"Machine: {m.get('machine')}, {m.get('cpu', {}).get('brand_raw', '?')}, "
           f"{m.get('cpu', {}).get('count', '?')} cores, Python {m.get('python_version')}; "
           f"{d.get('datetime', '')[:10]}. Regenerate with `make bench` "
           "(the load ramp: `make bench-load`, LOAD.md; the soak: `make soak`, SOAK.md).", "",
           "| benchmark | median | mean | figure |", "|---|---|---|---|"]
    for b in d["benchmarks"]:
        s = b["stats"]
        extra = ", ".join(f"{k} {v:,}" if isinstance(v, (int, float)) else f"{k} {v}"
                          for k, v in b.get("extra_info", {}).items())
        out.append(f"| {b['name']} | {s['median'] * 1000:.3f} ms | {s['mean'] * 1000:.3f} ms | "
                   f"{extra} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
