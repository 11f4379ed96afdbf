#!/usr/bin/env python3
"""Schemathesis against a real Flagstaff server: the management API with an admin token, then
OFREP with a client key (issue 12's adversarial suites; `scripts/test.sh` runs this).

Usage: run.py FLAGSTAFF_BINARY   (run with the Python of the .venv-schemathesis venv)

The server is the real binary on 127.0.0.1 with a data dir of its own in a temporary folder,
seeded with a realistic project (tests/schemathesis/seed.json) through the command line, the way
an operator would. Fuzzing with an admin token revokes tokens and changes users, so nothing else
shares this server. Exits non-zero on any failure; prints the number of cases each suite ran.

Knobs (environment): SCHEMATHESIS_MAX_EXAMPLES (cases per operation and phase: default 100 for
the management API's 37 operations, three times that for OFREP's two),
SCHEMATHESIS_SEED (reproduce a run; the seed of each run is printed), SCHEMATHESIS_PHASES (default
examples,fuzzing,stateful; add coverage to explore), SCHEMATHESIS_ONLY (`ofrep` or `api`: one suite),
SCHEMATHESIS_KEEP (a folder to keep the
reports and the server's log in).
"""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OFREP_SPEC = ROOT.parent / "shared" / "reference" / "ofrep-openapi.yaml"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
ADMIN_EMAIL = "schemathesis@example.com"
ADMIN_PASSWORD = "a long password for the fuzzer, \"quoted\""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, method="GET", token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def wait_ready(url, server, deadline_s=30):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode} before it was ready")
        try:
            urllib.request.urlopen(f"{url}/readyz", timeout=1).read()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    sys.exit(f"the server was not ready within {deadline_s} s")


def patched_ofrep_spec(folder):
    """The reference OFREP document with its two known defects fixed (DEPENDENCIES.md): an
    evaluation's value is `anyOf` its typed shapes (an integer is also a float, so `oneOf` refuses
    every integer), and the reason enum holds OpenFeature's DEFAULT and ERROR."""
    spec = yaml.safe_load(OFREP_SPEC.read_text())
    success = spec["components"]["schemas"]["evaluationSuccess"]
    value_shapes = [part for part in success["allOf"] if "oneOf" in part]
    assert len(value_shapes) == 1, "the OFREP document changed: review this patch"
    value_shapes[0]["anyOf"] = value_shapes[0].pop("oneOf")
    reasons = success["allOf"][0]["properties"]["reason"]["enum"]
    reasons += [r for r in ("DEFAULT", "ERROR") if r not in reasons]
    path = folder / "ofrep-openapi.patched.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_suite(name, args, report, env):
    print(f"\n=== schemathesis: {name} ===", flush=True)
    started = time.monotonic()
    # In the temporary folder: schemathesis keeps a crash cache in its working directory.
    code = subprocess.run(args, env=env, cwd=report.parent).returncode
    took = time.monotonic() - started
    summary = json.loads(report.read_text()) if report.exists() else {}
    return code, summary, took


def count_cases(report):
    """Test cases a run sent, from its JSON report."""
    return report.get("test_cases", {}).get("generated")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = str(Path(sys.argv[1]).resolve())
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    max_examples = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "100"))
    seed = os.environ.get("SCHEMATHESIS_SEED") or str(random.randrange(2**31))
    keep = os.environ.get("SCHEMATHESIS_KEEP")

    tmp = Path(tempfile.mkdtemp(prefix="flagstaff-schemathesis-"))
    data = tmp / "data"
    base = [binary, "--data-dir", str(data), "--log", "warn"]
    subprocess.run(base + ["import", str(HERE / "seed.json")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        base + ["user", "create", "--email", ADMIN_EMAIL, "--role", "admin", "--password-stdin"],
        input=ADMIN_PASSWORD + "\n", text=True, check=True,
    )
    token = subprocess.run(
        base + ["token", "create", "--email", ADMIN_EMAIL, "--name", "schemathesis"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "server.log", "w")
    server = subprocess.Popen(
        base[:-2] + ["--log", "info", "serve", "--bind", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    results = []
    try:
        wait_ready(url, server)
        api = f"{url}/api/v1"
        me = next(u for u in call(f"{api}/users", token=token)["users"] if u["email"] == ADMIN_EMAIL)
        my_token = call(f"{api}/tokens", token=token)["tokens"][0]
        client_key = call(
            f"{api}/projects/shop/environments/production/keys", "POST", token,
            {"kind": "client", "name": "schemathesis, \"fuzzer\""},
        )["key"]

        env = dict(os.environ)
        env["PYTHONPATH"] = str(HERE) + os.pathsep + env.get("PYTHONPATH", "")
        env["SCHEMATHESIS_HOOKS"] = "hooks"
        env["FLAGSTAFF_SUITE_USER_ID"] = str(me["id"])
        env["FLAGSTAFF_SUITE_TOKEN_ID"] = str(my_token["id"])
        common = [
            "--checks", CHECKS,
            "--phases", os.environ.get("SCHEMATHESIS_PHASES", "examples,fuzzing,stateful"),
            "--seed", seed,
            "--no-color",
            "--generation-database", "none",
            "--request-timeout", "10",
            "--report", "json",
        ]
        print(f"schemathesis seed {seed} (SCHEMATHESIS_SEED={seed} reproduces this run)", flush=True)

        config = [schemathesis, "--config-file", str(HERE / "schemathesis.toml"), "run"]
        suites = {
            # OFREP first: the management API's fuzzing may delete the client key's environment.
            "ofrep": (
                "OFREP (reference document, client key)",
                [str(patched_ofrep_spec(tmp)), "--url", url, "-H", f"Authorization: Bearer {client_key}",
                 "--max-examples", str(3 * max_examples), "--workers", "1"],
            ),
            "api": (
                "management API (/api/v1/openapi.json, admin token)",
                [f"{api}/openapi.json", "-H", f"Authorization: Bearer {token}",
                 "--max-examples", str(max_examples), "--workers", "2"],
            ),
        }
        only = os.environ.get("SCHEMATHESIS_ONLY")
        for key, (name, args) in suites.items():
            if only and only != key:
                continue
            report = tmp / f"{key}.json"
            results.append((name, *run_suite(
                name, config + args + common + ["--report-json-path", str(report)], report, env,
            )))
        if server.poll() is not None:
            sys.exit(f"the server exited with {server.returncode} during the run (see its log)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        if keep:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
            print(f"reports and server log kept in {keep}")
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n=== schemathesis summary ===")
    failed = not results
    for name, code, report, took in results:
        cases = count_cases(report)
        print(f"{name}: {cases} cases in {took:.0f} s, exit code {code}")
        failed |= code != 0
    if failed:
        sys.exit("schemathesis found failures (see above; rerun with the seed printed there)")


if __name__ == "__main__":
    main()
