#!/usr/bin/env bash
# The long schemathesis run (CI runs 15 examples per operation): N examples per operation against the ASGI app
# with the shipped bundles and a real Redis; writes benchmarks/results/fuzz.json (cases and status codes per
# operation). Usage: bash benchmarks/fuzz_service.sh [N=300]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
report=$(mktemp)
DFI_FUZZ_EXAMPLES=$n DFI_FUZZ_REPORT=$report python3 -m pytest -q -p no:warnings tests/service/test_fuzz.py
python3 - "$report" "$n" <<'PY'
import collections, json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by_op = collections.defaultdict(collections.Counter)
for row in rows:
    by_op[row["operation"]][str(row["status"])] += 1
server_errors = sum(1 for row in rows if row["status"] >= 500)
out = {"command": f"bash benchmarks/fuzz_service.sh {sys.argv[2]}", "cases": len(rows), "server_errors": server_errors,
       "status_by_operation": {op: dict(sorted(c.items())) for op, c in sorted(by_op.items())}}
open("benchmarks/results/fuzz.json", "w").write(json.dumps(out, indent=2) + "\n")
print(f"{len(rows)} generated requests, {server_errors} server errors → benchmarks/results/fuzz.json")
PY
rm -f "$report"
