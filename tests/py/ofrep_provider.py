"""openfeature-sdk + openfeature-provider-ofrep (PyPI) against a Flagstaff server.

Usage: .venv-tests/bin/python tests/py/ofrep_provider.py <server url> <key>
Prints one JSON line {"step": "results", "results": {name: details}}; the Rust test
(tests/it/ofrep_clients.rs) checks them.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def pick(details):
    reason = details.reason
    code = details.error_code
    return {
        "value": details.value,
        "type": type(details.value).__name__,
        "variant": details.variant,
        "reason": getattr(reason, "value", reason),
        "errorCode": getattr(code, "value", code),
        "flagMetadata": dict(details.flag_metadata or {}),
    }


def main():
    url, key = sys.argv[1], sys.argv[2]
    api.set_provider(OFREPProvider(url, headers_factory=lambda: {"Authorization": f"Bearer {key}"}))
    client = api.get_client()
    staff = EvaluationContext("u-9", {"email": "jo@acme-internal.example"})
    results = {
        "staff": pick(client.get_boolean_details("new-checkout", False, staff)),
        "noContext": pick(client.get_boolean_details("new-checkout", True)),
        "noTargetingKey": pick(client.get_boolean_details("new-checkout", True, EvaluationContext(None, {"plan": "free"}))),
        "split": pick(client.get_string_details("checkout-split", "none", EvaluationContext("u-2"))),
        "splitNoTargetingKey": pick(client.get_string_details("checkout-split", "none", EvaluationContext())),
        "price": pick(client.get_float_details("price", 0.0)),
        "maxItems": pick(client.get_integer_details("max-items", 0)),
        "theme": pick(client.get_object_details("theme", {})),
        "internal": pick(client.get_boolean_details("internal-tool", False, EvaluationContext("u-1"))),
        "gated": pick(client.get_boolean_details("gated", True, EvaluationContext("u-1"))),
        "missing": pick(client.get_boolean_details("no-such-flag", True)),
    }
    print(json.dumps({"step": "results", "results": results}), flush=True)
    api.shutdown()


if __name__ == "__main__":
    main()
