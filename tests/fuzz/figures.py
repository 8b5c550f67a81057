"""Prints the figures of a scripts/fuzz.sh run: requests sent, test cases, failures per check."""

import json
import sys

CHECKS = [
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "positive_data_acceptance", "missing_required_header", "unsupported_method",
    "allow_header_conformance", "use_after_free", "ensure_resource_availability", "ignored_auth",
    "object_level_authorization", "positive_data_refused_only_as_documented",
]

report_path, counts_path, elapsed, rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
report = json.load(open(report_path))
try:
    counts = json.load(open(counts_path))
except (OSError, ValueError):
    counts = {"requests": None, "by_status": {}, "by_operation": {}}
failures = report.get("failures", [])
errors = report.get("errors", [])
per_check = {c: 0 for c in CHECKS}
for f in failures:
    name = f.get("code") or f.get("type") or f.get("title")
    per_check[name] = per_check.get(name, 0) + f.get("count", 1)
total_failures = sum(f.get("count", 1) for f in failures)
print()
print("=== fuzz figures ===")
print(f"requests sent:        {counts['requests']}")
print(f"test cases generated: {report['test_cases']['generated']}")
print(f"failures:             {total_failures} ({report['test_cases']['unique_failures']} unique)")
print(f"errors:               {sum(e.get('count', 1) for e in errors)}")
print(f"duration:             {elapsed} s")
print(f"seed:                 {report.get('seed')}")
print("statuses:             " + ", ".join(f"{k}: {v}" for k, v in sorted(counts["by_status"].items())))
print("per operation:")
for op, n in sorted(counts["by_operation"].items()):
    print(f"  {op:45} {n}")
print("failures per check:")
for c, n in per_check.items():
    print(f"  {c:45} {n}")
for f in failures:
    print(f"  ! {f.get('title')} x{f.get('count')} in {', '.join(f.get('operations', []))}")
for e in errors:
    print(f"  ! error: {e.get('title')} x{e.get('count')}")
ok = rc == 0 and total_failures == 0 and not errors
print(f"{'PASS' if ok else 'FAIL'}: {counts['requests']} requests, {total_failures} failures")
sys.exit(0 if ok else 1)
