"""Schemathesis checks of our own, loaded by scripts/fuzz.sh (SCHEMATHESIS_HOOKS=hooks).

`positive_data_acceptance` accepts only a status list, so tests/fuzz/schemathesis.toml adds 422
to it for one documented reason (a schema-valid body whose input object does not exist in Storage
is refused with 422 `input_asset_not_found`, docs/api.md). The check below takes that leniency
back: a schema-valid request may be refused with 422 only for that reason, and with 409 only as
`task_conflict` (the same task_id and step with a different body, SPEC §4.1). Any other 4xx on a
schema-valid request is a rule the document does not state, and fails the run.
"""

import json

import schemathesis
from schemathesis.specs.openapi.checks import is_unexpected_http_status_case

# Error codes a schema-valid request may get, by status, and why (each is in docs/api.md).
DOCUMENTED = {
    422: {"input_asset_not_found"},  # the input URL is valid but names no readable object
    409: {"task_conflict"},  # the task_id's step exists with a different body
}

# A refine's draft must be the Tripo id of one of the caller's own `models` rows (docs/api.md,
# "POST /generate/refine-model"): data no schema can state, refused on that one field with this
# message, like a missing input object is refused with `input_asset_not_found`.
DRAFT_FIELD = "tripo_draft_task_id"
DRAFT_REFUSAL = "no model of yours has this Tripo task id"


def _error(response):
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


@schemathesis.check
def positive_data_refused_only_as_documented(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or is_unexpected_http_status_case(case):
        return None
    if response.status_code not in DOCUMENTED:
        return None
    err = _error(response) or {}
    code = err.get("code")
    if code in DOCUMENTED[response.status_code]:
        return None
    details = err.get("details") or []
    if (
        code == "validation_error"
        and details
        and all(
            d.get("field") == DRAFT_FIELD and d.get("message") == DRAFT_REFUSAL for d in details
        )
    ):
        return None
    raise AssertionError(
        f"Schema-valid request refused with {response.status_code} {code}: "
        f"{json.dumps(details)[:500]}\nOnly {sorted(DOCUMENTED[response.status_code])} is documented "
        "for a schema-valid request: state the rule in /openapi.json or accept the request."
    )


@schemathesis.check
class responses_counted:
    """Counts every answer (requests sent), by operation and status, for tests/fuzz/figures.py.
    It never fails. The file is FUZZ_COUNTS (written after the run)."""

    def __init__(self):
        self.by_status = {}
        self.by_operation = {}
        self.total = 0

    def after_response(self, ctx, response, case):
        self.total += 1
        key = str(response.status_code)
        self.by_status[key] = self.by_status.get(key, 0) + 1
        label = f"{response.request.method} {case.operation.path}"
        self.by_operation[label] = self.by_operation.get(label, 0) + 1

    def after_run(self, ctx):
        import os

        path = os.environ.get("FUZZ_COUNTS")
        if path:
            with open(path, "w") as f:
                json.dump(
                    {"requests": self.total, "by_status": self.by_status, "by_operation": self.by_operation},
                    f,
                )


def _serialise_ast_parse():
    """CPython 3.11's AST conversion is not safe when two threads build an AST at once
    ("SystemError: AST constructor recursion depth mismatch"): Hypothesis describes lambdas by
    parsing their source (`ast.parse`) in whichever worker thread draws first, so a run with
    several workers can end in that runtime error (not a finding). One lock around `ast.parse`
    makes those parses take turns; they are few and small."""
    import ast
    import threading

    if getattr(ast.parse, "_makeit3d_serialised", False):
        return
    lock = threading.Lock()
    parse = ast.parse

    def serialised(*args, **kwargs):
        with lock:
            return parse(*args, **kwargs)

    serialised._makeit3d_serialised = True
    ast.parse = serialised


_serialise_ast_parse()


def _warm_lambda_sources():
    """Parses schemathesis' coverage module for Hypothesis' lambda descriptions once, here, before
    the workers start. Left to the workers, two threads may build that AST at once, and CPython
    3.11's AST conversion is not safe for it ("SystemError: AST constructor recursion depth
    mismatch", a runtime error of the fuzz run, not a finding)."""
    try:
        import schemathesis.specs.openapi.coverage._schema as coverage
        from hypothesis.internal.reflection import get_pretty_function_description

        get_pretty_function_description(eval(compile("lambda x: x", coverage.__file__, "eval")))
    except Exception:  # best effort: the run works without it
        pass


_warm_lambda_sources()
