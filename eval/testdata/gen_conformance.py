#!/usr/bin/env python3
"""Generates conformance.json: the cases every Flagstaff SDK must pass (CONFORMANCE.md).

Each expectation below is written by hand from DESIGN.md §3 and eval/README.md ("Semantics decided
here"); nothing is computed by the engine. Rollout cases compute the bucket with the standard-
library murmur3 of gen_vectors.py (the formula of DESIGN.md §3) and place the weights around it,
so a context lands exactly on a boundary: bucket b with a first weight of b is served the second
variation, with b + 1 the first.

Usage: python3 eval/testdata/gen_conformance.py > eval/testdata/conformance.json
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_vectors import murmur3_x86_32, value_text  # noqa: E402

BUCKETS = 100000


def bucket(salt, value):
    return (murmur3_x86_32(f"{salt}.{value_text(value)}".encode("utf-8")) * BUCKETS) >> 32


BOOL = [{"key": "on", "value": True}, {"key": "off", "value": False}]


def bundle(flags, segments=(), revision=1):
    return {
        "flagstaff": 1,
        "project": {"key": "conformance", "name": "Conformance"},
        "environment": "production",
        "revision": revision,
        "segments": list(segments),
        "flags": list(flags),
    }


def flag(key, state, variations=BOOL, type_="boolean"):
    return {"key": key, "type": type_, "variations": variations, "environments": {"production": state}}


def rule_flag(key, clauses, rule_id="r"):
    """A boolean flag: rule `rule_id` serves `on`, the fallthrough `off`."""
    return flag(key, {"enabled": True, "rules": [{"id": rule_id, "clauses": clauses, "serve": {"variation": "on"}}],
                      "fallthrough": {"variation": "off"}, "version": 3})


def case(name, flag_key, context, value, variant, reason, error=None, **extra):
    expect = {"value": value, "variant": variant, "reason": reason, "errorCode": error}
    for k, v in extra.items():
        expect[{"rule_id": "ruleId"}.get(k, k)] = v
    return {"name": name, "flag": flag_key, "context": context, "expect": expect}


def hit(name, flag_key, context):
    """The rule of a rule_flag matched."""
    return case(name, flag_key, context, True, "on", "TARGETING_MATCH", ruleId="r")


def miss(name, flag_key, context):
    """The rule of a rule_flag did not match: the fallthrough serves `off`."""
    return case(name, flag_key, context, False, "off", "DEFAULT", ruleId=None)


def clause(attribute, op, values, negate=False):
    c = {"attribute": attribute, "op": op, "values": values}
    if negate:
        c["negate"] = True
    return c


def operators():
    f = []
    c = []
    tk = "u-1"

    def op(key, cl, hits, misses):
        f.append(rule_flag(key, [cl]))
        for n, ctx in hits:
            c.append(hit(f"{key}: {n}", key, dict({"targetingKey": tk}, **ctx)))
        for n, ctx in misses:
            c.append(miss(f"{key}: {n}", key, dict({"targetingKey": tk}, **ctx)))

    hostile = 'a,b "quoted"\t<script>é'
    op("in-string", clause("plan", "in", ["pro", "team", hostile]),
       [("one of the values", {"plan": "team"}), ("hostile string exactly", {"plan": hostile}),
        ("any element of an array", {"plan": ["free", "pro"]})],
       [("other value", {"plan": "free"}), ("case differs", {"plan": "Pro"}), ("prefix only", {"plan": "pr"}),
        ("missing attribute", {}), ("null counts as missing", {"plan": None}),
        ("no element of an array", {"plan": ["free", "basic"]}), ("empty array", {"plan": []}),
        ("an object is the wrong type", {"plan": {"name": "pro"}})])
    op("in-number", clause("seats", "in", [1, 42]),
       [("same number", {"seats": 42}), ("1.0 equals 1", {"seats": 1.0})],
       [("a string is not a number", {"seats": "42"}), ("other number", {"seats": 43}),
        ("true is not 1", {"seats": True})])
    op("in-number-text", clause("seats", "in", ["42"]),
       [("the same string", {"seats": "42"})],
       [("a number is not a string", {"seats": 42})])
    op("in-bool", clause("beta", "in", [True]),
       [("true", {"beta": True})],
       [("false", {"beta": False}), ("the string true", {"beta": "true"}), ("1 is not true", {"beta": 1})])
    op("contains", clause("email", "contains", ["@acme", "+test"]),
       [("substring", {"email": "ann@acme.com"}), ("second value", {"email": "bob+test@x.org"})],
       [("absent", {"email": "ann@example.com"}), ("case differs", {"email": "ann@ACME.com"}),
        ("a number is the wrong type", {"email": 1})])
    op("starts-with", clause("path", "starts_with", ["/admin"]),
       [("prefix", {"path": "/admin/users"}), ("whole string", {"path": "/admin"})],
       [("elsewhere", {"path": "/x/admin"})])
    op("ends-with", clause("email", "ends_with", ["@acme.com"]),
       [("suffix", {"email": "ann@acme.com"})],
       [("suffix followed by more", {"email": "ann@acme.com.evil"}), ("missing", {})])
    op("matches", clause("email", "matches", ["^[a-z]+@acme\\.com$"]),
       [("anchored match", {"email": "ann@acme.com"})],
       [("digits not allowed", {"email": "ann1@acme.com"}), ("a number is the wrong type", {"email": 5})])
    op("matches-unanchored", clause("ua", "matches", ["Fire[fF]ox/\\d+"]),
       [("anywhere in the string", {"ua": "Mozilla/5.0 Firefox/128.0"})],
       [("not there", {"ua": "Chrome/1"})])
    op("lt", clause("age", "lt", [18]),
       [("below", {"age": 17}), ("fraction below", {"age": 17.99}), ("negative", {"age": -1})],
       [("equal is not less", {"age": 18}), ("above", {"age": 30}), ("a numeric string is the wrong type", {"age": "5"})])
    op("lte", clause("age", "lte", [18]),
       [("equal", {"age": 18}), ("18.0 equals 18", {"age": 18.0})],
       [("above", {"age": 18.5})])
    op("gt", clause("score", "gt", [0.5]),
       [("above", {"score": 0.75}), ("any element of an array", {"score": [0.1, 0.9]})],
       [("equal is not greater", {"score": 0.5}), ("boolean is the wrong type", {"score": True})])
    op("gte", clause("score", "gte", [10, 100]),
       [("equal to the first", {"score": 10}), ("above the first", {"score": 50})],
       [("below both", {"score": 9})])
    op("semver-eq", clause("version", "semver_eq", ["1.2.0"]),
       [("same", {"version": "1.2.0"}), ("leading v", {"version": "v1.2.0"}),
        ("minor and patch omitted", {"version": "1.2"}), ("build metadata ignored", {"version": "1.2.0+build.7"})],
       [("pre-release differs", {"version": "1.2.0-rc.1"}), ("not a version", {"version": "one.two"}),
        ("a number is the wrong type", {"version": 1.2})])
    op("semver-lt", clause("version", "semver_lt", ["2.0.0"]),
       [("older", {"version": "1.9.9"}), ("pre-release of the bound", {"version": "2.0.0-beta.1"}),
        ("numeric not textual order", {"version": "1.10.0"})],
       [("equal", {"version": "2.0.0"}), ("newer", {"version": "10.0.0"})])
    op("semver-lte", clause("version", "semver_lte", ["2.0.0"]),
       [("equal", {"version": "2"})], [("newer patch", {"version": "2.0.1"})])
    op("semver-gt", clause("version", "semver_gt", ["1.2.3"]),
       [("newer", {"version": "1.10.0"})],
       [("pre-release is older", {"version": "1.2.3-alpha"}), ("equal", {"version": "1.2.3"})])
    op("semver-gte", clause("version", "semver_gte", ["1.2.3"]),
       [("equal", {"version": "1.2.3"}), ("newer major", {"version": "2.0.0"})],
       [("older", {"version": "1.2.2"})])
    op("before", clause("created", "before", ["2024-01-01T00:00:00Z"]),
       [("earlier RFC 3339", {"created": "2023-12-31T23:59:59Z"}),
        ("earlier with an offset", {"created": "2024-01-01T00:59:59+01:00"}),
        ("earlier Unix milliseconds", {"created": 1704067199999})],
       [("the same instant is not before", {"created": "2024-01-01T00:00:00Z"}),
        ("the same instant in milliseconds", {"created": 1704067200000}),
        ("later", {"created": "2024-06-01T00:00:00Z"}), ("not a date", {"created": "yesterday"})])
    op("after-millis", clause("created", "after", [1704067200000]),
       [("later RFC 3339", {"created": "2024-01-01T00:00:00.001Z"}), ("later milliseconds", {"created": 1704067200001})],
       [("equal", {"created": 1704067200000}), ("earlier", {"created": "2023-01-01T00:00:00Z"})])
    op("exists", clause("plan", "exists", []),
       [("present", {"plan": "free"}), ("present but false", {"plan": False}), ("empty string", {"plan": ""})],
       [("missing", {}), ("null counts as missing", {"plan": None})])
    op("not-exists", clause("plan", "exists", [], negate=True),
       [("missing", {}), ("null", {"plan": None})],
       [("present", {"plan": "free"})])
    op("not-in", clause("country", "in", ["FR", "DE"], negate=True),
       [("other value", {"country": "US"}), ("wrong type matches when negated", {"country": 33})],
       [("listed value", {"country": "FR"}), ("missing never matches, even negated", {}),
        ("null never matches, even negated", {"country": None}),
        ("an array with a listed element", {"country": ["US", "DE"]})])
    op("not-lt", clause("age", "lt", [18], negate=True),
       [("not below", {"age": 18}), ("a string is the wrong type", {"age": "young"})],
       [("below", {"age": 3}), ("missing", {})])
    # Dotted paths: the top-level key "a.b" if present, else the path a → b.
    op("dotted", clause("user.plan", "in", ["pro"]),
       [("nested path", {"user": {"plan": "pro"}}), ("top-level dotted key", {"user.plan": "pro"}),
        ("top-level key wins over the path", {"user.plan": "pro", "user": {"plan": "free"}})],
       [("top-level key wins even when the path would match", {"user.plan": "free", "user": {"plan": "pro"}}),
        ("path through a non-object", {"user": "pro"}), ("path missing", {"user": {}}),
        ("nested under another name", {"team": {"plan": "pro"}})])
    op("dotted-deep", clause("org.billing.tier", "gte", [2]),
       [("three levels", {"org": {"billing": {"tier": 3}}})],
       [("three levels, below", {"org": {"billing": {"tier": 1}}}), ("array in the path", {"org": [{"billing": {"tier": 3}}]})])
    # All clauses of a rule must match.
    f.append(rule_flag("all-clauses", [clause("plan", "in", ["pro"]), clause("country", "in", ["FR"])]))
    c.append(hit("all-clauses: both match", "all-clauses", {"targetingKey": tk, "plan": "pro", "country": "FR"}))
    c.append(miss("all-clauses: one fails", "all-clauses", {"targetingKey": tk, "plan": "pro", "country": "DE"}))
    # The targetingKey is an attribute like any other for clauses.
    f.append(rule_flag("key-clause", [clause("targetingKey", "starts_with", ["admin-"])]))
    c.append(hit("key-clause: prefix", "key-clause", {"targetingKey": "admin-7"}))
    c.append(miss("key-clause: no key", "key-clause", {}))
    return {"name": "operators", "description": "Every operator with its edge cases; each flag has one rule `r` "
            "serving `on` and a fallthrough serving `off`.", "bundle": bundle(f), "cases": c}


def reasons():
    strings = [{"key": "red", "value": "red"}, {"key": "green", "value": "green"}, {"key": "blue", "value": "blue"}]
    f = [
        flag("static", {"enabled": True, "fallthrough": {"variation": "on"}, "version": 7}),
        flag("disabled", {"enabled": False, "off_variation": "on", "fallthrough": {"variation": "off"}, "version": 2}),
        flag("disabled-default-off", {"fallthrough": {"variation": "on"}}),
        flag("not-in-this-environment", {}),
        flag("color", {"enabled": True, "targets": [{"variation": "green", "values": ["u-green", "a,b \"c\""]}],
                       "rules": [{"id": "vip", "clauses": [clause("vip", "in", [True])], "serve": {"variation": "blue"}}],
                       "fallthrough": {"variation": "red"}, "version": 11}, strings, "string"),
        flag("color-off-first", {"fallthrough": {"variation": "blue"}}, strings, "string"),
        flag("on-without-fallthrough", {"enabled": True}, strings, "string"),
        flag("price", {"enabled": True, "fallthrough": {"variation": "std"}},
             [{"key": "std", "value": 9.99}, {"key": "big", "value": 1000000}], "number"),
        flag("theme", {"enabled": True, "fallthrough": {"variation": "dark"}},
             [{"key": "dark", "value": {"bg": "#000", "sizes": [1, 2.5], "nested": {"ok": True, "none": None}}},
              {"key": "list", "value": [1, "two", None]}], "json"),
        flag("rule-without-id", {"enabled": True, "rules": [{"clauses": [clause("x", "exists", [])],
                                                              "serve": {"variation": "on"}}],
                                 "fallthrough": {"variation": "off"}}),
    ]
    c = [
        case("on, nothing but a fallthrough: STATIC", "static", {}, True, "on", "STATIC", version=7),
        case("off: the off variation, DISABLED", "disabled", {"targetingKey": "u-1"}, True, "on", "DISABLED", version=2),
        case("enabled omitted is off; boolean off variation defaults to the false one", "disabled-default-off",
             {"targetingKey": "u-1"}, False, "off", "DISABLED"),
        case("an environment the flag does not mention: off", "not-in-this-environment", {}, False, "off", "DISABLED"),
        case("target list: TARGETING_MATCH", "color", {"targetingKey": "u-green", "vip": True},
             "green", "green", "TARGETING_MATCH", ruleId=None, version=11),
        case("hostile targeting key in a target list", "color", {"targetingKey": "a,b \"c\""},
             "green", "green", "TARGETING_MATCH"),
        case("a number never matches a target list", "color", {"targetingKey": 5}, "red", "red", "DEFAULT"),
        case("rule serving a variation: TARGETING_MATCH with its id", "color", {"targetingKey": "u-2", "vip": True},
             "blue", "blue", "TARGETING_MATCH", ruleId="vip"),
        case("flag with targets and rules, none matching: DEFAULT", "color", {"targetingKey": "u-2"},
             "red", "red", "DEFAULT", ruleId=None),
        case("no context at all: DEFAULT", "color", {}, "red", "red", "DEFAULT"),
        case("non-boolean off variation defaults to the first", "color-off-first", {}, "red", "red", "DISABLED"),
        case("fallthrough omitted serves the off variation", "on-without-fallthrough", {}, "red", "red", "STATIC"),
        case("number value", "price", {}, 9.99, "std", "STATIC"),
        case("JSON value", "theme", {}, {"bg": "#000", "sizes": [1, 2.5], "nested": {"ok": True, "none": None}},
             "dark", "STATIC"),
        case("rule without an id: no rule id", "rule-without-id", {"x": 1}, True, "on", "TARGETING_MATCH", ruleId=None),
        case("unknown flag: FLAG_NOT_FOUND", "no-such-flag", {"targetingKey": "u-1"}, None, None, "ERROR",
             "FLAG_NOT_FOUND"),
        case("flag keys are case-sensitive", "Static", {}, None, None, "ERROR", "FLAG_NOT_FOUND"),
    ]
    return {"name": "reasons", "description": "Every reason and error, defaults of omitted fields, value types.",
            "bundle": bundle(f), "cases": c}


def segments():
    segs = [
        {"key": "beta", "name": "Beta", "included": ["u-in", "u-both"], "excluded": ["u-out", "u-both"],
         "rules": [{"clauses": [clause("email", "ends_with", ["@acme.com"])]},
                   {"clauses": [clause("plan", "in", ["pro"]), clause("country", "in", ["FR"])]}]},
        {"key": "empty", "name": "Empty"},
        {"key": "staff", "name": "Staff", "included": ["u-staff"]},
    ]

    def seg_flag(key, values, negate=False):
        return rule_flag(key, [{"op": "in_segment", "values": values, **({"negate": True} if negate else {})}])

    f = [seg_flag("in-beta", ["beta"]), seg_flag("in-any", ["empty", "staff"]), seg_flag("not-in-beta", ["beta"], True)]
    c = [
        hit("included key", "in-beta", {"targetingKey": "u-in"}),
        miss("excluded key, though a rule matches", "in-beta", {"targetingKey": "u-out", "email": "x@acme.com"}),
        miss("excluded beats included", "in-beta", {"targetingKey": "u-both"}),
        hit("a segment rule matches", "in-beta", {"targetingKey": "u-9", "email": "jo@acme.com"}),
        hit("a segment rule matches without a targetingKey", "in-beta", {"email": "jo@acme.com"}),
        hit("second rule, all its clauses", "in-beta", {"targetingKey": "u-9", "plan": "pro", "country": "FR"}),
        miss("second rule, one clause fails", "in-beta", {"targetingKey": "u-9", "plan": "pro", "country": "DE"}),
        miss("neither listed nor matching", "in-beta", {"targetingKey": "u-9"}),
        hit("any of several segments", "in-any", {"targetingKey": "u-staff"}),
        miss("an empty segment holds nobody", "in-any", {"targetingKey": "u-9"}),
        hit("negated: not in the segment", "not-in-beta", {"targetingKey": "u-9"}),
        miss("negated: in the segment", "not-in-beta", {"targetingKey": "u-in"}),
        hit("negated: in_segment needs no attribute, so an empty context is simply not in it", "not-in-beta", {}),
    ]
    return {"name": "segments", "description": "Segments: included, excluded, rules; in_segment and its negation.",
            "bundle": bundle(f, segs), "cases": c}


def prerequisites():
    f = [
        flag("base-on", {"enabled": True, "fallthrough": {"variation": "on"}}),
        flag("base-off", {"enabled": False, "off_variation": "on"}),
        flag("base-rule", {"enabled": True, "rules": [{"id": "pro", "clauses": [clause("plan", "in", ["pro"])],
                                                      "serve": {"variation": "on"}}], "fallthrough": {"variation": "off"}}),
        flag("base-split", {"enabled": True, "fallthrough": {"rollout": {"variations": [
            {"variation": "on", "weight": 100000}, {"variation": "off", "weight": 0}]}}}),
        flag("needs-on", {"enabled": True, "off_variation": "off", "prerequisites": [{"flag": "base-on", "variations": ["on"]}],
                          "fallthrough": {"variation": "on"}, "version": 4}),
        flag("needs-off-flag", {"enabled": True, "off_variation": "off",
                                "prerequisites": [{"flag": "base-off", "variations": ["on"]}], "fallthrough": {"variation": "on"}}),
        flag("needs-rule", {"enabled": True, "off_variation": "off",
                            "prerequisites": [{"flag": "base-rule", "variations": ["on"]}], "fallthrough": {"variation": "on"}}),
        flag("needs-either", {"enabled": True, "off_variation": "off",
                              "prerequisites": [{"flag": "base-rule", "variations": ["on", "off"]}],
                              "fallthrough": {"variation": "on"}}),
        flag("needs-split", {"enabled": True, "off_variation": "off",
                             "prerequisites": [{"flag": "base-split", "variations": ["on"]}], "fallthrough": {"variation": "on"}}),
        flag("chain", {"enabled": True, "off_variation": "off",
                       "prerequisites": [{"flag": "needs-rule", "variations": ["on"]}], "fallthrough": {"variation": "on"}}),
        flag("two", {"enabled": True, "off_variation": "off",
                     "prerequisites": [{"flag": "base-on", "variations": ["on"]}, {"flag": "base-rule", "variations": ["on"]}],
                     "fallthrough": {"variation": "on"}}),
        flag("off-with-failing-prerequisite", {"enabled": False, "off_variation": "off",
                                               "prerequisites": [{"flag": "base-off", "variations": ["on"]}]}),
    ]
    c = [
        case("prerequisite met: DEFAULT (a flag with prerequisites)", "needs-on", {}, True, "on", "DEFAULT", version=4),
        case("prerequisite flag is off, though its off variation is listed", "needs-off-flag", {"targetingKey": "u-1"},
             False, "off", "PREREQUISITE_FAILED", prerequisite="base-off"),
        case("prerequisite serves a listed variation for this context", "needs-rule", {"plan": "pro"}, True, "on", "DEFAULT"),
        case("prerequisite serves an unlisted variation", "needs-rule", {"plan": "free"}, False, "off",
             "PREREQUISITE_FAILED", prerequisite="base-rule"),
        case("either variation listed", "needs-either", {"plan": "free"}, True, "on", "DEFAULT"),
        case("prerequisite rollout needs a targetingKey: with it", "needs-split", {"targetingKey": "u-1"}, True, "on", "DEFAULT"),
        case("a prerequisite in error fails (no targetingKey for its rollout)", "needs-split", {}, False, "off",
             "PREREQUISITE_FAILED", prerequisite="base-split"),
        case("chain: the prerequisite's own prerequisite passes", "chain", {"plan": "pro"}, True, "on", "DEFAULT"),
        case("chain: fails at depth two; names the direct prerequisite", "chain", {"plan": "free"}, False, "off",
             "PREREQUISITE_FAILED", prerequisite="needs-rule"),
        case("second of two fails", "two", {"plan": "free"}, False, "off", "PREREQUISITE_FAILED", prerequisite="base-rule"),
        case("both of two pass", "two", {"plan": "pro"}, True, "on", "DEFAULT"),
        case("off wins over prerequisites: DISABLED", "off-with-failing-prerequisite", {}, False, "off", "DISABLED"),
    ]
    return {"name": "prerequisites", "description": "Prerequisites in order, chains, failing through off, "
            "unlisted variations and errors.", "bundle": bundle(f), "cases": c}


def rollouts():
    abc = [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}, {"key": "c", "value": "c"}]
    f = []
    c = []
    # Boundaries with the default salt (the flag key) and bucket_by (targetingKey).
    key = "user-boundary"
    b = bucket("edge-low", key)
    assert 0 < b < BUCKETS - 1
    f.append(flag("edge-low", {"enabled": True, "fallthrough": {"rollout": {"variations": [
        {"variation": "a", "weight": b}, {"variation": "b", "weight": BUCKETS - b}]}}}, abc, "string"))
    c.append(case(f"bucket {b} with a first weight of {b}: the second variation", "edge-low",
                  {"targetingKey": key}, "b", "b", "SPLIT"))
    b2 = bucket("edge-high", key)
    assert 0 < b2 < BUCKETS - 1
    f.append(flag("edge-high", {"enabled": True, "fallthrough": {"rollout": {"variations": [
        {"variation": "a", "weight": b2 + 1}, {"variation": "b", "weight": BUCKETS - b2 - 1}]}}}, abc, "string"))
    c.append(case(f"bucket {b2} with a first weight of {b2 + 1}: the first variation", "edge-high",
                  {"targetingKey": key}, "a", "a", "SPLIT"))
    # A shared salt: two flags place the same context in the same bucket; three variations with the
    # middle one ending exactly at the bucket, and one starting at it.
    salt = "shared-salt"
    b3 = bucket(salt, key)
    assert 1 < b3 < BUCKETS - 2
    f.append(flag("salted-mid-ends", {"enabled": True, "fallthrough": {"rollout": {"salt": salt, "variations": [
        {"variation": "a", "weight": b3 - 1}, {"variation": "b", "weight": 1}, {"variation": "c", "weight": BUCKETS - b3}]}}},
        abc, "string"))
    c.append(case(f"salt {salt!r}: bucket {b3} is the first past a one-wide middle slice", "salted-mid-ends",
                  {"targetingKey": key}, "c", "c", "SPLIT"))
    f.append(flag("salted-mid-holds", {"enabled": True, "fallthrough": {"rollout": {"salt": salt, "variations": [
        {"variation": "a", "weight": b3}, {"variation": "b", "weight": 1}, {"variation": "c", "weight": BUCKETS - b3 - 1}]}}},
        abc, "string"))
    c.append(case(f"salt {salt!r}: bucket {b3} is the one-wide middle slice", "salted-mid-holds",
                  {"targetingKey": key}, "b", "b", "SPLIT"))
    # Zero weights, and everything on one variation.
    f.append(flag("all-last", {"enabled": True, "fallthrough": {"rollout": {"variations": [
        {"variation": "a", "weight": 0}, {"variation": "b", "weight": 0}, {"variation": "c", "weight": BUCKETS}]}}}, abc, "string"))
    c.append(case("weights 0, 0, 100000: the last", "all-last", {"targetingKey": key}, "c", "c", "SPLIT"))
    c.append(case("any key: the last", "all-last", {"targetingKey": ""}, "c", "c", "SPLIT"))
    # bucket_by another attribute, a number, a dotted path, a non-ASCII value.
    for name, attr, value, ctx in [
        ("bucket_by a string attribute", "company", "Acme, Inc. \"east\"", {"targetingKey": "u-1", "company": "Acme, Inc. \"east\""}),
        ("bucket_by a number (hashed as its JSON text)", "seats", 12345, {"seats": 12345}),
        ("bucket_by a dotted path", "org.id", "org-77", {"org": {"id": "org-77"}}),
        ("bucket_by non-ASCII text", "city", "Zürich 東京", {"city": "Zürich 東京"}),
    ]:
        fk = "by-" + attr.replace(".", "-")
        bb = bucket(fk, value)
        assert 0 < bb < BUCKETS
        f.append(flag(fk, {"enabled": True, "fallthrough": {"rollout": {"bucket_by": attr, "variations": [
            {"variation": "a", "weight": bb}, {"variation": "b", "weight": BUCKETS - bb}]}}}, abc, "string"))
        c.append(case(f"{name}: bucket {bb}, first weight {bb}", fk, ctx, "b", "b", "SPLIT"))
        c.append(case(f"{name}: missing attribute", fk, {"targetingKey": "u-1"}, None, None, "ERROR",
                      "TARGETING_KEY_MISSING"))
    c.append(case("bucket_by a boolean: neither string nor number", "by-company", {"targetingKey": "u-1", "company": True},
                  None, None, "ERROR", "TARGETING_KEY_MISSING"))
    c.append(case("bucket_by a number given as a string hashes the same text", "by-seats", {"seats": "12345"},
                  "b", "b", "SPLIT"))
    # The same number as text: move the boundary by one and it flips to the first variation.
    c.append(case("no targetingKey for the default bucket_by", "edge-low", {}, None, None, "ERROR", "TARGETING_KEY_MISSING"))
    c.append(case("targetingKey null", "edge-low", {"targetingKey": None}, None, None, "ERROR", "TARGETING_KEY_MISSING"))
    # A rollout in a rule: SPLIT with the rule id; a target before it wins.
    b4 = bucket("rule-split", key)
    f.append(flag("rule-split", {"enabled": True, "targets": [{"variation": "c", "values": [key + "-vip"]}],
                                 "rules": [{"id": "eu", "clauses": [clause("region", "in", ["eu"])],
                                            "serve": {"rollout": {"variations": [
                                                {"variation": "a", "weight": b4 + 1},
                                                {"variation": "b", "weight": BUCKETS - b4 - 1}]}}}],
                                 "fallthrough": {"variation": "c"}}, abc, "string"))
    c.append(case(f"rollout in a rule: bucket {b4}, first weight {b4 + 1}", "rule-split",
                  {"targetingKey": key, "region": "eu"}, "a", "a", "SPLIT", ruleId="eu"))
    c.append(case("rollout in a rule without a targetingKey: error", "rule-split", {"region": "eu"}, None, None, "ERROR",
                  "TARGETING_KEY_MISSING"))
    c.append(case("a target list beats the rule", "rule-split", {"targetingKey": key + "-vip", "region": "eu"},
                  "c", "c", "TARGETING_MATCH"))
    c.append(case("rule not matching: the fallthrough", "rule-split", {"targetingKey": key, "region": "us"},
                  "c", "c", "DEFAULT"))
    return {"name": "rollouts", "description": "Rollouts at exact bucket boundaries (buckets computed with the "
            "formula of DESIGN.md §3), salts, bucket_by attributes, missing keys.", "bundle": bundle(f), "cases": c}


def main():
    corpus = {
        "flagstaff_conformance": 1,
        "description": "Flagstaff's SDK conformance corpus: see CONFORMANCE.md. Generated by gen_conformance.py.",
        "suites": [operators(), reasons(), segments(), prerequisites(), rollouts()],
    }
    json.dump(corpus, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
