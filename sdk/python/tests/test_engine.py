"""The native engine (`flagstaff._native.Engine`): the server's own evaluation code, reached from
Python. The conformance corpus runs through the whole client in test_conformance.py; here are
the rollout vectors every SDK must pass and the conversions between Python and JSON."""

import json
import math
from pathlib import Path

import pytest

from flagstaff._native import Engine

ROOT = Path(__file__).resolve().parents[3]


def bundle(flags, segments=(), revision=1):
    return json.dumps(
        {
            "flagstaff": 1,
            "project": {"key": "shop", "name": "Shop"},
            "environment": "production",
            "revision": revision,
            "segments": list(segments),
            "flags": list(flags),
        }
    ).encode()


def boolean(key, state):
    return {
        "key": key,
        "type": "boolean",
        "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
        "environments": {"production": state},
    }


def test_every_bucketing_vector_lands_in_its_bucket():
    vectors = json.loads((ROOT / "eval/testdata/bucketing-vectors.json").read_text())["vectors"]
    assert len(vectors) > 20
    for i, v in enumerate(vectors):
        b = v["bucket"]
        # The one-wide slice [b, b + 1) is variation "hit": only bucket b lands there.
        weights = [("below", b), ("hit", 1), ("above", 100000 - b - 1)]
        flag = {
            "key": "f",
            "type": "string",
            "variations": [{"key": k, "value": k} for k, _ in weights],
            "environments": {
                "production": {
                    "enabled": True,
                    "fallthrough": {
                        "rollout": {
                            "salt": v["salt"],
                            "variations": [{"variation": k, "weight": w} for k, w in weights],
                        }
                    },
                }
            },
        }
        engine = Engine.from_bytes(bundle([flag]))
        value, variant, reason, error, *_ = engine.evaluate("f", {"targetingKey": v["value"]})
        assert (variant, reason, error) == ("hit", "SPLIT", None), f"vector {i}: {v}"


def test_contexts_convert_from_python_values():
    state = {
        "enabled": True,
        "rules": [
            {"id": "unicode", "clauses": [{"attribute": "name", "op": "in", "values": ["Zoë \"<script>\", \t"]}], "serve": {"variation": "on"}},
            {"id": "nested", "clauses": [{"attribute": "team.tier", "op": "in", "values": ["gold"]}], "serve": {"variation": "on"}},
            {"id": "tuple", "clauses": [{"attribute": "tags", "op": "in", "values": ["vip"]}], "serve": {"variation": "on"}},
            {"id": "big", "clauses": [{"attribute": "n", "op": "gt", "values": [1e19]}], "serve": {"variation": "on"}},
            {"id": "int", "clauses": [{"attribute": "n", "op": "in", "values": [3]}], "serve": {"variation": "on"}},
            {"id": "bool", "clauses": [{"attribute": "beta", "op": "in", "values": [True]}], "serve": {"variation": "on"}},
        ],
        "fallthrough": {"variation": "off"},
    }
    engine = Engine.from_bytes(bundle([boolean("f", state)]))

    def rule(context):
        return engine.evaluate("f", context)[4]

    assert rule({"name": 'Zoë "<script>", \t'}) == "unicode"
    assert rule({"team": {"tier": "gold"}}) == "nested"
    assert rule({"tags": ("a", "vip")}) == "tuple"
    assert rule({"n": 10**20}) == "big"
    assert rule({"n": 3}) == "int"
    assert rule({"n": 3.0}) == "int"
    assert rule({"beta": True}) == "bool"
    # Any mapping, not only a dict.
    from types import MappingProxyType

    assert rule(MappingProxyType({"beta": True})) == "bool"
    # 1 is not true: bool and int stay apart.
    assert rule({"beta": 1}) is None
    # What has no JSON form is left out, never an error.
    cyclic = []
    cyclic.append(cyclic)
    for odd in [{"n": math.nan}, {"n": object()}, {1: "x"}, {"tags": cyclic}, None, "text", [1, 2]]:
        assert engine.evaluate("f", odd)[:4] == (False, "off", "DEFAULT", None)


def test_values_come_back_as_new_python_objects():
    flag = {
        "key": "cfg",
        "type": "json",
        "variations": [{"key": "v", "value": {"a": [1, 2.5, None, "é"], "big": 9007199254740993, "t": True}}],
        "environments": {"production": {"enabled": True, "fallthrough": {"variation": "v"}}},
    }
    engine = Engine.from_bytes(bundle([flag]))
    first = engine.json_value("cfg", {}, None)
    assert first == {"a": [1, 2.5, None, "é"], "big": 9007199254740993, "t": True}
    first["a"].append("changed by the caller")
    assert engine.json_value("cfg", {}, None)["a"] == [1, 2.5, None, "é"]


def test_typed_reads_fall_back_to_the_default_and_count_only_what_they_serve():
    engine = Engine.from_bytes(bundle([boolean("f", {"enabled": True, "fallthrough": {"variation": "on"}})]))
    marker = object()
    assert engine.bool_value("f", {}, marker) is True
    assert engine.string_value("f", {}, marker) is marker
    assert engine.number_value("f", {}, marker) is marker
    assert engine.bool_value("missing", {}, marker) is marker
    assert engine.bool_value(42, {}, marker) is marker
    assert engine.json_value("f", None, marker) is True
    engine.evaluate("f", {})
    engine.evaluate_all({})
    assert engine.drain_counts() == [("f", "on", 3)]
    assert engine.drain_counts() == []


def test_changed_flags_between_bundles():
    on = boolean("a", {"enabled": True})
    old = Engine.from_bytes(bundle([on, boolean("b", {"enabled": True}), boolean("gone", {})]))
    new = Engine.from_bytes(bundle([on, boolean("b", {"enabled": False}), boolean("new", {})], revision=2))
    assert new.changed_since(old) == ["b", "gone", "new"]
    assert (new.project, new.environment, new.revision, len(new)) == ("shop", "production", 2, 3)
    assert new.flag_keys() == ["a", "b", "new"]


def test_a_malformed_bundle_is_a_value_error():
    for data in [b"", b"{", b'{"flagstaff": 1}', b"[]"]:
        with pytest.raises(ValueError, match="not a bundle"):
            Engine.from_bytes(data)
