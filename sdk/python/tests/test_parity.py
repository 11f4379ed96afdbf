"""Parity: for 10,000 random contexts and every flag of a rich document (every operator, plain
and negated, on attributes present or not and of the wrong type; segments, targets,
prerequisites, rollouts by other attributes and salts, disabled flags, flags with no state,
every type), the Python SDK's local evaluations equal the server's OFREP bulk answers exactly:
value, variant, reason (OFREP's `DISABLED` for a failed prerequisite), error code, version and
rule id. (The Rust SDK's parity test, tests/it/sdk_rust_parity.rs, in Python.)"""

import http.client
import json
import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from test_conformance import same

CONTEXTS = 10_000
CONCURRENCY = 8


def boolean(key, state):
    return {"key": key, "type": "boolean", "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "environments": {"production": state}}


def string3(key, state):
    return {"key": key, "type": "string",
            "variations": [{"key": "a", "value": "alpha"}, {"key": "b", "value": "beta"}, {"key": "c", "value": "gamma"}],
            "environments": {"production": state}}


def rule(id, clauses, variation):
    return {"id": id, "clauses": clauses, "serve": {"variation": variation}}


def clause(attribute, op, values, negate=False):
    c = {"attribute": attribute, "op": op, "values": values}
    if negate:
        c["negate"] = True
    return c


def split(bucket_by=None, salt=None):
    rollout = {"variations": [{"variation": "a", "weight": 33000}, {"variation": "b", "weight": 33000},
                              {"variation": "c", "weight": 34000}]}
    if bucket_by:
        rollout["bucket_by"] = bucket_by
    if salt:
        rollout["salt"] = salt
    return {"rollout": rollout}


OPERATORS = [
    ("in", "country", ["DE", "FR", 7]), ("in", "age", [18, 21, 65.5, "30"]), ("contains", "email", ["admin", "+test"]),
    ("starts_with", "version", ["1.", "10"]), ("ends_with", "email", ["@acme.com", "@example.org"]),
    ("matches", "email", ["^[a-c].*@(acme|example)\\.com$", "[0-9]{3}"]), ("lt", "age", [18]), ("lte", "score", [0.5]),
    ("gt", "age", [64, 99.5]), ("gte", "score", [0.25, 0.75]), ("semver_eq", "version", ["1.2.3", "2.0.0-beta.1"]),
    ("semver_lt", "version", ["2.0.0"]), ("semver_lte", "version", ["1.2.3"]), ("semver_gt", "version", ["2.0.0-beta.1"]),
    ("semver_gte", "version", ["10.0.0"]), ("before", "created", ["2025-01-01T00:00:00Z"]),
    ("after", "created", [1_740_000_000_000]), ("exists", "beta", []), ("in", "tags", ["vip"]),
    ("in", "user.plan", ["pro", "enterprise"]), ("in", "a.b", ["dotted"]), ("in", "team.tier", ["gold"]),
    ("in", "name", ['Zoë "<script>", \t']),
]


def rich_document():
    flags = []
    for i, (op, attribute, values) in enumerate(OPERATORS):
        flags.append(string3(f"op-{i}-{op}", {"enabled": True,
            "rules": [rule(f"r{i}", [clause(attribute, op, values)], "a"), rule(f"n{i}", [clause(attribute, op, values, True)], "b")],
            "fallthrough": {"variation": "c"}}))
    flags += [
        boolean("seg-beta", {"enabled": True, "rules": [rule("beta", [{"op": "in_segment", "values": ["beta", "nobody"]}], "on")],
                             "fallthrough": {"variation": "off"}}),
        boolean("seg-and", {"enabled": True,
            "rules": [rule("both", [{"op": "in_segment", "values": ["staff"]}, clause("country", "in", ["DE"])], "on"),
                      rule("not-staff", [{"op": "in_segment", "values": ["staff"], "negate": True}], "off")],
            "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 10000}, {"variation": "off", "weight": 90000}]}}}),
        string3("targets", {"enabled": True,
            "targets": [{"variation": "a", "values": ["user-1", "user-2", "user-3"]}, {"variation": "b", "values": ["user-4", "user-9"]}],
            "rules": [rule("vip", [clause("tags", "in", ["vip"])], "c")], "fallthrough": {"variation": "b"}}),
        string3("split-default", {"enabled": True, "fallthrough": split()}),
        string3("split-by-plan-id", {"enabled": True, "fallthrough": split("user.id", "salty")}),
        string3("split-by-age", {"enabled": True, "fallthrough": split("age")}),
        string3("split-in-rule", {"enabled": True,
            "rules": [{"id": "eu", "clauses": [clause("country", "in", ["DE", "FR", "GB"])], "serve": split(None, "eu")}],
            "fallthrough": {"variation": "a"}}),
        boolean("pre-base", {"enabled": True, "rules": [rule("adults", [clause("age", "gte", [18])], "on")],
                             "fallthrough": {"variation": "off"}}),
        boolean("pre-mid", {"enabled": True, "prerequisites": [{"flag": "pre-base", "variations": ["on"]}],
            "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 70000}, {"variation": "off", "weight": 30000}]}}}),
        string3("pre-top", {"enabled": True, "off_variation": "c",
            "prerequisites": [{"flag": "pre-mid", "variations": ["on"]}, {"flag": "seg-beta", "variations": ["off"]}],
            "fallthrough": {"variation": "a"}}),
        boolean("pre-on-disabled", {"enabled": True, "prerequisites": [{"flag": "disabled", "variations": ["on"]}],
                                    "fallthrough": {"variation": "on"}}),
        boolean("disabled", {"enabled": False, "fallthrough": {"variation": "on"}}),
        string3("disabled-off-b", {"enabled": False, "off_variation": "b"}),
        {"key": "no-state", "type": "string", "variations": [{"key": "x", "value": "X"}, {"key": "y", "value": "Y"}]},
        boolean("static-on", {"enabled": True, "fallthrough": {"variation": "on"}}),
        {"key": "cfg-number", "kind": "config", "type": "number",
         "variations": [{"key": "int", "value": 42}, {"key": "float", "value": 0.1}, {"key": "tiny", "value": 1e-7},
                        {"key": "neg", "value": -3.25}, {"key": "big", "value": 9_007_199_254_740_993}],
         "environments": {"production": {"enabled": True,
             "rules": [rule("young", [clause("age", "lt", [30])], "float"), rule("old", [clause("age", "gt", [80])], "big"),
                       rule("fr", [clause("country", "in", ["FR"])], "neg")],
             "fallthrough": {"rollout": {"variations": [{"variation": "int", "weight": 50000}, {"variation": "tiny", "weight": 50000}]}}}}},
        {"key": "cfg-json", "kind": "config", "type": "json",
         "variations": [{"key": "obj", "value": {"limits": {"rps": 10, "burst": [1, 2.5, "x"]}, "on": True}},
                        {"key": "arr", "value": [1, {"a": None}, "é"]}, {"key": "str", "value": "plain <script>"}],
         "environments": {"production": {"enabled": True,
             "rules": [rule("plan", [clause("user.plan", "in", ["free"])], "arr"), rule("vip", [clause("tags", "contains", ["vi"])], "str")],
             "fallthrough": {"variation": "obj"}}}},
        boolean("multi-clause", {"enabled": True,
            "rules": [rule("all", [clause("email", "ends_with", ["@acme.com"]), clause("age", "gte", [21]),
                                   clause("country", "in", ["JP"], True)], "on"),
                      {"clauses": [clause("beta", "in", [True])], "serve": {"variation": "on"}}],
            "fallthrough": {"variation": "off"}}),
    ]
    return {
        "flagstaff": 1, "project": {"key": "shop", "name": "Shop"},
        "environments": [{"key": "production", "name": "Production"}],
        "segments": [
            {"key": "beta", "name": "Beta", "included": ["user-5", "user-6", "user-7"], "excluded": ["user-8"],
             "rules": [{"clauses": [clause("email", "ends_with", ["@acme.com"])]},
                       {"clauses": [clause("tags", "in", ["new"]), clause("age", "lt", [30])]}]},
            {"key": "staff", "name": "Staff", "included": ["user-10"], "excluded": [],
             "rules": [{"clauses": [clause("email", "matches", ["^admin"])]}]},
            {"key": "nobody", "name": "Nobody"},
        ],
        "flags": flags,
    }


def random_context(rng: random.Random):
    c = {}

    def maybe(name, make):
        if rng.random() < 0.8:
            c[name] = make()

    if rng.random() < 0.95:
        c["targetingKey"] = f"user-{rng.randrange(3000)}"
    maybe("email", lambda: f"{rng.choice(['admin', 'ada', 'bob', 'carol', 'dave+test', 'eve123'])}@"
          f"{rng.choice(['acme.com', 'example.com', 'example.org', 'ACME.com', 'gmail.com'])}" if rng.random() < 0.95 else 42)
    maybe("country", lambda: rng.choice([["JP", "DE"], 7, "DE", "FR", "US", "GB", "JP", "DE", "FR", "US"]))
    maybe("age", lambda: rng.choice(["30", rng.uniform(0, 100), 65.5, rng.randrange(100), rng.randrange(100), True]))
    maybe("score", lambda: 0.25 if rng.random() < 0.1 else rng.random())
    maybe("version", lambda: rng.choice(["1.0.0", "1.2.3", "2.0.0-beta.1", "2.0.0", "10.1.0", "not-a-version", "1.2", "v1.2.3"]))
    maybe("created", lambda: rng.choice([rng.randrange(1_700_000_000_000, 1_800_000_000_000), "yesterday",
                                         f"202{rng.randrange(3, 7)}-0{rng.randrange(1, 10)}-1{rng.randrange(9)}T12:00:00Z"]))
    maybe("beta", lambda: rng.random() < 0.5)
    maybe("tags", lambda: [t for t in ["a", "vip", "new", "b"] if rng.random() < 0.3])
    maybe("user", lambda: {"plan": rng.choice(["free", "pro", "enterprise"]),
                           "id": rng.randrange(1000) if rng.random() < 0.5 else f"id-{rng.randrange(1000)}"})
    maybe("a.b", lambda: rng.choice(["dotted", "other"]))
    maybe("a", lambda: {"b": rng.choice(["dotted", "nested"])})
    maybe("team", lambda: {"tier": rng.choice(["gold", "silver", None])})
    maybe("name", lambda: rng.choice(['Zoë "<script>", \t', "zoe", None]))
    return c


def expected_ofrep(e):
    """The OFREP answer the server should give for the SDK's evaluation."""
    metadata = {"version": e.version}
    if e.rule_id is not None:
        metadata["ruleId"] = e.rule_id
    if e.reason == "PREREQUISITE_FAILED":
        metadata["prerequisiteFailed"] = True
    if e.prerequisite is not None:
        metadata["prerequisite"] = e.prerequisite
    if e.error is not None:
        return {"key": e.key, "errorCode": e.error, "metadata": metadata}
    return {"key": e.key, "value": e.value, "variant": e.variant,
            "reason": "DISABLED" if e.reason == "PREREQUISITE_FAILED" else e.reason, "metadata": metadata}


def test_sdk_evaluations_equal_the_servers_ofrep_answers(make_setup):
    setup = make_setup(rich_document())
    client = setup.client(poll_interval=3600)
    keys = client.flag_keys()
    assert len(keys) >= 40, f"a rich document: {len(keys)} flags"
    rng = random.Random(20_260_301)
    contexts = [random_context(rng) for _ in range(CONTEXTS)]
    local = threading.local()
    host, port = "127.0.0.1", setup.server.port

    def ask(context):
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(host, port, timeout=30)
        local.conn.request("POST", "/ofrep/v1/evaluate/flags", body=json.dumps({"context": context}),
                           headers={"Authorization": f"Bearer {setup.key}", "Content-Type": "application/json"})
        response = local.conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)

    reasons = Counter()
    compared = 0
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for i, (context, answer) in enumerate(zip(contexts, pool.map(ask, contexts))):
            server = sorted(answer["flags"], key=lambda item: item["key"])
            for item in server:
                item.pop("errorDetails", None)  # prose; the code is what must agree
            mine = [expected_ofrep(e) for e in client.all_flags(context).values()]
            assert len(server) == len(keys), f"every flag answered for context {i}"
            for m, s in zip(mine, server):
                assert same(m, s), f"context {i} {context}: SDK {m} != server {s}"
                reasons[s.get("reason") or s.get("errorCode")] += 1
                compared += 1
                if isinstance(s.get("value"), bool):
                    assert client.bool_value(s["key"], context, not s["value"]) is s["value"]
    client.close()
    print(f"parity: {compared} evaluations over {CONTEXTS} contexts and {len(keys)} flags: {dict(reasons)}")
    # The corpus reaches every outcome.
    for outcome in ["STATIC", "DEFAULT", "TARGETING_MATCH", "SPLIT", "DISABLED", "TARGETING_KEY_MISSING"]:
        assert reasons[outcome] > 0, f"no {outcome} among {dict(reasons)}"
