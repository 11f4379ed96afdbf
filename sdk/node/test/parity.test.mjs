// Parity: every flag and segment of the conformance corpus imported into the real server, and
// 10,000 random contexts built from the attributes and values the corpus uses. For each, the
// client's local evaluations equal the server's bulk OFREP answer (POST /ofrep/v1/evaluate/flags)
// exactly: value, variant, reason (OFREP's DISABLED for a failed prerequisite), error code,
// version and rule id.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { Flagstaff } from '../index.mjs';
import { REPO, Server } from './helpers.mjs';

const CONTEXTS = 10000;
const CONCURRENCY = 16;

const corpus = JSON.parse(fs.readFileSync(path.join(REPO, 'eval/testdata/conformance.json'), 'utf8'));

/** One import document holding every suite's flags and segments. */
function corpusDocument() {
  return {
    flagstaff: 1,
    project: { key: 'conformance', name: 'Conformance' },
    environments: [{ key: 'production', name: 'Production' }],
    segments: corpus.suites.flatMap((s) => s.bundle.segments),
    flags: corpus.suites.flatMap((s) => s.bundle.flags.map(({ environments, ...flag }) => {
      // The state's version is the server's to keep.
      const { version, ...state } = environments.production;
      return { ...flag, environments: { production: state } };
    })),
  };
}

/** A small seeded generator (mulberry32), so a failure can be replayed. */
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every attribute the corpus's contexts use, with every value seen (targetingKey: strings only). */
function attributePool() {
  const pool = new Map();
  for (const suite of corpus.suites) {
    for (const c of suite.cases) {
      for (const [name, value] of Object.entries(c.context)) {
        if (name === 'targetingKey' && typeof value !== 'string') continue;
        if (!pool.has(name)) pool.set(name, []);
        pool.get(name).push(value);
      }
    }
  }
  return [...pool];
}

function expectedOfrep(e) {
  const metadata = { version: e.version };
  if (e.ruleId) metadata.ruleId = e.ruleId;
  if (e.reason === 'PREREQUISITE_FAILED') metadata.prerequisiteFailed = true;
  if (e.prerequisite) metadata.prerequisite = e.prerequisite;
  if (e.errorCode) return { key: e.key, errorCode: e.errorCode, metadata };
  return { key: e.key, value: e.value, variant: e.variant, metadata, reason: e.reason === 'PREREQUISITE_FAILED' ? 'DISABLED' : e.reason };
}

test('10,000 random contexts: the client evaluates every flag exactly as the server answers over OFREP', async (t) => {
  const server = await Server.start({ document: corpusDocument(), project: 'conformance' });
  t.after(() => server.stop());
  const client = await Flagstaff.start({ url: server.url, key: server.key, stream: false, sendEvents: false });
  t.after(() => client.close());
  const keys = client.flagKeys();
  assert.equal(keys.length, corpus.suites.reduce((n, s) => n + s.bundle.flags.length, 0));

  const next = random(20261207);
  const pool = attributePool();
  const contexts = [];
  for (let i = 0; i < CONTEXTS; i++) {
    const ctx = {};
    for (const [name, values] of pool) {
      if (next() < (name === 'targetingKey' ? 0.85 : 0.3)) ctx[name] = values[Math.floor(next() * values.length)];
    }
    if (ctx.targetingKey !== undefined && next() < 0.5) ctx.targetingKey = `u-${Math.floor(next() * 1e6)}`;
    contexts.push(ctx);
  }

  const reasons = new Map();
  let compared = 0;
  let at = 0;
  const worker = async () => {
    while (at < contexts.length) {
      const i = at++;
      const response = await fetch(`${server.url}/ofrep/v1/evaluate/flags`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${server.key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ context: contexts[i] }),
      });
      assert.equal(response.status, 200, `context ${i}: ${JSON.stringify(contexts[i])}`);
      const body = await response.json();
      const theirs = body.flags.map(({ errorDetails, ...item }) => item).sort((a, b) => (a.key < b.key ? -1 : 1));
      const mine = Object.values(client.allFlags(contexts[i])).map(expectedOfrep);
      // Both sides write keys in the same order: comparing the text is exact, and quick.
      if (JSON.stringify(mine) !== JSON.stringify(theirs)) assert.deepStrictEqual(mine, theirs, `context ${i}: ${JSON.stringify(contexts[i])}`);
      for (const item of theirs) {
        const reason = item.reason ?? item.errorCode;
        reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
        compared += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  assert.equal(compared, CONTEXTS * keys.length);
  for (const reason of ['STATIC', 'DEFAULT', 'TARGETING_MATCH', 'SPLIT', 'DISABLED', 'TARGETING_KEY_MISSING']) {
    assert.ok(reasons.get(reason) > 0, `no evaluation gave ${reason}: ${JSON.stringify([...reasons])}`);
  }
  t.diagnostic(`parity: ${compared} evaluations over ${CONTEXTS} contexts: ${JSON.stringify(Object.fromEntries(reasons))}`);
});
