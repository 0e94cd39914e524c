#!/usr/bin/env bash
# The long schemathesis run (CI runs 15 examples per operation and 3 stateful sequences): N examples per operation
# and S stateful sequences (up to 6 linked calls each) against the ASGI app with the shipped bundles and a real
# Redis; writes benchmarks/results/fuzz.json (cases and status codes per phase and operation).
# Usage: bash benchmarks/fuzz_service.sh [N=300] [S=200]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-300}
stateful=${2:-200}
report=$(mktemp)
status=0  # a failing case still writes the report (then the exit status is pytest's)
DFI_FUZZ_EXAMPLES=$n DFI_FUZZ_STATEFUL_EXAMPLES=$stateful DFI_FUZZ_REPORT=$report \
  python3 -m pytest -q -p no:warnings tests/service/test_fuzz.py || status=$?
python3 - "$report" "$n" "$stateful" <<'PY'
import collections, json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
server_errors = sum(1 for row in rows if row["status"] >= 500)
out = {"command": f"bash benchmarks/fuzz_service.sh {sys.argv[2]} {sys.argv[3]}", "cases": len(rows),
       "server_errors": server_errors}
for phase in ("stateless", "stateful"):
    by_op = collections.defaultdict(collections.Counter)
    for row in rows:
        if row.get("phase", "stateless") == phase:
            by_op[row["operation"]][str(row["status"])] += 1
    out[f"{phase}_cases"] = sum(sum(c.values()) for c in by_op.values())
    out[f"{phase}_status_by_operation"] = {op: dict(sorted(c.items())) for op, c in sorted(by_op.items())}
open("benchmarks/results/fuzz.json", "w").write(json.dumps(out, indent=2) + "\n")
print(f"{len(rows)} generated requests, {server_errors} server errors → benchmarks/results/fuzz.json")
PY
rm -f "$report"
exit $status
