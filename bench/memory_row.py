"""One Markdown row from `zero-train memory --measure --json` (see bench/memory_table.sh)."""
import json
import sys

r = json.load(sys.stdin)
s, m = r["stages"][0], r["measured"]
# Categories under 1 KiB (a 1-rank communicator's 1-2 byte scratch) are left out of the worst ratio.
cats = [c for c in s["categories"] if c != "padding" and s["categories"][c] >= 1024]
worst = max((abs(max(x["peak_bytes"][c] for x in m["ranks"]) / s["categories"][c] - 1), c) for c in cats)
ledger = max(x["peak_total_bytes"] for x in m["ranks"])
rss = max(x["peak_resident_bytes"] for x in m["ranks"])
pred_rss = s["total_bytes"] + r["fixed_overhead_bytes"]
mib = lambda b: f"{b / 2**20:.1f}"
cells = [r["model"]["name"], r["ranks"], s["stage"], mib(s["total_bytes"]), mib(ledger),
         f"{1 + worst[0]:.3f} ({worst[1]})", mib(pred_rss), mib(rss), f"{rss / pred_rss:.3f}"]
print("| " + " | ".join(str(c) for c in cells) + " |")
