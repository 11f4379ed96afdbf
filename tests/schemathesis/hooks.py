"""Schemathesis hooks of tests/schemathesis/run.py (loaded through SCHEMATHESIS_HOOKS).

The fuzzer may do anything with an admin token except cut the branch it sits on: revoking its
own token, or disabling or demoting its own user, would turn every later case into a 401 and
test nothing. Those calls are pointed at an id that does not exist (a 404, still checked), and
deleting the seeded project at a project that does not exist; what the stateful phase creates
through the document's links it may revoke, change and delete freely.

OFREP's document has no links, and a random flag key is always unknown: three in four drawn keys
are replaced by a key of the seeded project (tests/schemathesis/seed.json), so evaluations
reach real flags — their rules, rollouts and prerequisites — and not only FLAG_NOT_FOUND.
"""

import os
import zlib

import schemathesis

PROTECTED = {
    ("DELETE", "/tokens/{id}"): ("id", os.environ.get("FLAGSTAFF_SUITE_TOKEN_ID")),
    ("PATCH", "/users/{id}"): ("id", os.environ.get("FLAGSTAFF_SUITE_USER_ID")),
    ("DELETE", "/projects/{project}"): ("project", "shop"),
}
ELSEWHERE = {"id": 999_999_999, "project": "not-the-seeded-project"}


@schemathesis.hook
def before_call(ctx, case, kwargs):
    rule = PROTECTED.get((case.method.upper(), case.path))
    if rule is None or not case.path_parameters:
        return
    name, protected = rule
    if protected is not None and str(case.path_parameters.get(name)) == protected:
        case.path_parameters[name] = ELSEWHERE[name]


SEEDED_FLAGS = [
    "new-checkout",
    "payments-v2",
    "checkout.button-color",
    "search.page-size",
    "pricing_table",
    "legacy-banner",
]


@schemathesis.hook
def map_case(ctx, case):
    operation = ctx.operation
    if operation is None or operation.path != "/ofrep/v1/evaluate/flags/{key}" or not case.path_parameters:
        return case
    context = case.body.get("context") if isinstance(case.body, dict) else None
    if not isinstance(context, dict):
        return case
    drawn = str(case.path_parameters.get("key", ""))
    # Decided by the drawn value itself, so a run stays reproducible from its seed; the drawn key
    # stays in the context, so cases that differed only by their key stay distinct.
    pick = zlib.crc32(drawn.encode("utf-8", "surrogatepass"))
    if pick % 4 != 0:
        case.path_parameters["key"] = SEEDED_FLAGS[pick % len(SEEDED_FLAGS)]
        context["drawnKey"] = drawn
    return case
