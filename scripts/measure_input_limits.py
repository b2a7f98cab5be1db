"""Measure the input limits quoted in README's reliability table (writes JSON to stdout).

    .venv/bin/python scripts/measure_input_limits.py > docs/results/reliability/input_limits.json
"""
import json, os, platform, resource, sys, tempfile
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from helpers.paths import E5_DIR
from transformers import AutoTokenizer
from blockprune.data.tokens import encode_split
from blockprune.data.reading import read_records
from blockprune.errors import DataError
tok = AutoTokenizer.from_pretrained(str(E5_DIR))
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss()
text = ("मराठी बातमी " * 400_000)[:4_400_000]
out = encode_split(tok, ["लहान", text], max_length=64)
peak = rss()
d = tempfile.mkdtemp()
p = os.path.join(d, "wide.csv")
open(p, "w").write(",".join(f"column_{i}" for i in range(1_000_000)) + "\nx\n")
try:
    read_records(p)
except DataError as e:
    msg = str(e)
print(json.dumps({"command": "python scripts/measure_input_limits.py", "machine": platform.processor() or platform.machine(),
                  "date": "2026-12-02", "text_chars": len(text), "peak_rss_mb_before": round(base), "peak_rss_mb_after": round(peak),
                  "rss_increase_mb": round(peak - base), "full_length_counted": int(out["full_lengths"][1]),
                  "wide_header_message_chars": len(msg)}))
