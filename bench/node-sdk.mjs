// The Node SDK's figures for BENCHMARKS.md ("Node SDK"); run by bench/node-sdk.sh, which builds
// the release server and addon and passes: node bench/node-sdk.mjs <server url> <admin token>.
//
// 1. `boolValue` with a 5-attribute context, from JavaScript (rounds of 1,000,000 calls), and
//    what the OpenFeature SDK adds over it; `@openfeature/ofrep-provider` — a request per call —
//    in the same run.
// 2. Memory of a client holding 1,000 flags (a child process: RSS and heap before and after).
// 3. Toggle → SDK: from sending PATCH to the client's `change` event, over the stream.

import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const sdkDir = path.join(here, '../sdk/node');
const require = createRequire(path.join(sdkDir, 'package.json'));
const { Flagstaff, FlagstaffProvider } = require('./index.js');
const { OpenFeature } = require('@openfeature/server-sdk');
const { OFREPProvider } = require('@openfeature/ofrep-provider');

const [url, admin, mode] = process.argv.slice(2);

async function api(method, p, body) {
  const response = await fetch(`${url}${p}`, {
    method,
    headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => null);
  if (!response.ok) throw new Error(`${method} ${p}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

/** 1,000 flags as a busy project has them: on/off, rules on attributes and segments, rollouts. */
function thousandFlags() {
  const flags = [];
  for (let i = 0; i < 1000; i++) {
    const key = `flag-${String(i).padStart(4, '0')}`;
    const rules = i % 3 === 0 ? [] : [
      { id: `r${i}`, clauses: [{ attribute: 'country', op: 'in', values: ['FR', 'DE', 'NL', `C${i}`] }, { attribute: 'plan', op: 'in', values: ['pro', 'team'] }], serve: { variation: 'on' } },
      { id: `s${i}`, clauses: [{ op: 'in_segment', values: ['beta'] }], serve: { variation: 'on' } },
    ];
    flags.push({
      key, name: `Flag ${i}`, type: 'boolean', tags: ['bench'],
      variations: [{ key: 'on', value: true }, { key: 'off', value: false }],
      environments: { production: {
        enabled: i % 10 !== 0,
        targets: i % 4 === 0 ? [{ variation: 'on', values: Array.from({ length: 20 }, (_, j) => `user-${i}-${j}`) }] : [],
        rules,
        fallthrough: i % 2 ? { rollout: { variations: [{ variation: 'on', weight: 25000 }, { variation: 'off', weight: 75000 }] } } : { variation: 'off' },
      } },
    });
  }
  flags.push({
    key: 'new-checkout', type: 'boolean', variations: [{ key: 'on', value: true }, { key: 'off', value: false }],
    environments: { production: { enabled: true, rules: [
      { id: 'eu-pro', clauses: [{ attribute: 'country', op: 'in', values: ['FR', 'DE'] }, { attribute: 'plan', op: 'in', values: ['pro'] }], serve: { variation: 'on' } },
      { id: 'staff', clauses: [{ attribute: 'email', op: 'ends_with', values: ['@acme.com'] }], serve: { variation: 'on' } },
      { id: 'new-app', clauses: [{ attribute: 'version', op: 'semver_gte', values: ['2.0.0'] }], serve: { variation: 'on' } },
    ], fallthrough: { rollout: { variations: [{ variation: 'on', weight: 10000 }, { variation: 'off', weight: 90000 }] } } } },
  });
  return {
    flagstaff: 1, project: { key: 'bench', name: 'Bench' }, environments: [{ key: 'production', name: 'Production' }],
    segments: [{ key: 'beta', name: 'Beta', included: Array.from({ length: 50 }, (_, j) => `beta-${j}`), rules: [{ clauses: [{ attribute: 'email', op: 'ends_with', values: ['@beta.example'] }] }] }],
    flags,
  };
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * ns per call of `fn` over rounds of `n` calls: the median round's wall time, and its CPU time
 * (this process's user + system), which other processes on a busy machine do not inflate as much.
 */
function perCall(fn, n = 1000000, rounds = 5) {
  for (let i = 0; i < n / 10; i++) fn(i);
  const results = [];
  for (let r = 0; r < rounds; r++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) fn(i);
    const wall = Number(process.hrtime.bigint() - t0) / n;
    const cpu = process.cpuUsage(c0);
    results.push({ wall, cpu: ((cpu.user + cpu.system) * 1000) / n });
  }
  results.sort((a, b) => a.wall - b.wall);
  return results[Math.floor(results.length / 2)];
}

const show = (name, r) => console.log(`${name.padEnd(44)} ${fmt(r.wall).padStart(9)} wall  ${fmt(r.cpu).padStart(9)} CPU`);

/** µs per awaited call of `fn`, `n` calls in a row. */
async function perAsyncCall(fn, n) {
  for (let i = 0; i < Math.min(200, n / 10); i++) await fn(i);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn(i);
  return Number(process.hrtime.bigint() - t0) / n / 1000;
}

const fmt = (ns) => (ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);

async function memoryChild(key) {
  // Runs in a fresh process: the client's memory apart from everything else this script holds.
  const gc = globalThis.gc;
  // fetch (undici) loads on first use: not the client's memory.
  await (await fetch(`${url}/healthz`)).arrayBuffer();
  gc();
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const before = process.memoryUsage();
  const client = await Flagstaff.start({ url, key, sendEvents: false, stream: false });
  gc();
  await new Promise((r) => setTimeout(r, 50));
  gc();
  const after = process.memoryUsage();
  const flags = client.flagKeys().length;
  await client.close();
  // What one more configuration held costs, apart from the one-off growth of the process (the
  // allocator keeps what parsing used): 10 more engines from the same bundle, per engine.
  const { Engine } = require('./native.js');
  const bytes = Buffer.from(await (await fetch(`${url}/sdk/v1/bundle`, { headers: { Authorization: `Bearer ${key}` } })).arrayBuffer());
  const held = [new Engine(bytes)];
  gc();
  const rss0 = process.memoryUsage().rss;
  for (let i = 0; i < 10; i++) held.push(new Engine(bytes));
  gc();
  const perEngine = (process.memoryUsage().rss - rss0) / 10;
  const mib = (b) => b / 1048576;
  console.log(JSON.stringify({
    flags,
    bundle: mib(bytes.length),
    rss: mib(after.rss - before.rss),
    heapUsed: mib(after.heapUsed - before.heapUsed),
    external: mib(after.external - before.external),
    perEngine: mib(perEngine),
    engines: held.length,
  }));
}

function memoryFigure(key) {
  console.log('== memory of a client holding 1,001 flags (fresh process, after GC)');
  const memory = JSON.parse(execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), url, admin, 'memory', key], { encoding: 'utf8' }));
  console.log(`flags ${memory.flags} (bundle ${memory.bundle.toFixed(2)} MiB): a started client: RSS +${memory.rss.toFixed(1)} MiB, JS heap +${memory.heapUsed.toFixed(2)} MiB, external +${memory.external.toFixed(2)} MiB`);
  console.log(`each further compiled configuration held: RSS +${memory.perEngine.toFixed(2)} MiB`);
}

async function main() {
  if (mode === 'memory') return memoryChild(process.argv[5]);
  await api('POST', '/api/v1/import', thousandFlags());
  const { key } = await api('POST', '/api/v1/projects/bench/environments/production/keys', { kind: 'server', name: 'node bench' });
  if (process.env.FLAGSTAFF_NODE_BENCH_MEMORY_ONLY === '1') return memoryFigure(key);
  const client = await Flagstaff.start({ url, key, sendEvents: false, pollIntervalMs: 3600000 });
  const ctx = { targetingKey: 'user-1234', email: 'ada@example.com', plan: 'free', country: 'US', version: '1.4.2' };
  console.log('== boolValue, 5-attribute context (falls through all three rules to a rollout)');
  const served = client.evaluate('new-checkout', ctx);
  console.log(`   evaluation: ${served.variant} ${served.reason}`);
  const prepared = client.context(ctx);
  const bool = perCall(() => client.boolValue('new-checkout', ctx, false));
  show('boolValue(key, context object, false)', bool);
  show('  a new context object each call', perCall((i) => client.boolValue('new-checkout', { targetingKey: `user-${i}`, email: 'ada@example.com', plan: 'free', country: 'US', version: '1.4.2' }, false)));
  show('  a prepared context (client.context(…))', perCall(() => client.boolValue('new-checkout', prepared, false)));
  show('  of which JSON.stringify(context)', perCall(() => JSON.stringify(ctx)));
  show('boolValue, empty context, a flag without rules', perCall(() => client.boolValue('flag-0003', {}, false)));
  show('a Map.get, for scale', perCall(((m) => () => m.get('k'))(new Map([['k', 1]]))));

  OpenFeature.setLogger({ error: console.error, warn: console.warn, info() {}, debug() {} });
  await OpenFeature.setProviderAndWait('flagstaff', new FlagstaffProvider({ client }));
  const local = OpenFeature.getClient('flagstaff');
  const viaOpenFeature = await perAsyncCall(() => local.getBooleanValue('new-checkout', false, ctx), 200000);
  console.log(`FlagstaffProvider via OpenFeature   ${viaOpenFeature.toFixed(2)} µs per awaited call`);
  await OpenFeature.setProviderAndWait('ofrep', new OFREPProvider({
    baseUrl: url,
    headers: [['Authorization', `Bearer ${key}`]],
  }));
  const remote = OpenFeature.getClient('ofrep');
  // Its first request may go out on a keep-alive connection the server closed during the loops
  // above (EPIPE, and undici does not retry a POST): one request to start afresh.
  await remote.getBooleanDetails('new-checkout', true, ctx);
  const check = await remote.getBooleanDetails('new-checkout', true, ctx);
  if (check.errorCode) throw new Error(`the OFREP provider failed: ${JSON.stringify(check)}`);
  const viaOfrep = await perAsyncCall(() => remote.getBooleanValue('new-checkout', false, ctx), 3000);
  console.log(`@openfeature/ofrep-provider 0.1.3   ${viaOfrep.toFixed(1)} µs per awaited call (one HTTP request each)`);
  console.log(`   ratio ofrep-provider / boolValue: ${Math.round((viaOfrep * 1000) / bool.wall)}x`);

  memoryFigure(key);

  const samples = Number(process.env.FLAGSTAFF_NODE_LATENCY_SAMPLES || 200);
  // Each toggle is fetched and compiled whole: measured with this 1,001-flag bundle and with a
  // small project (one flag), as the Rust SDK's figure is.
  await api('POST', '/api/v1/import', {
    flagstaff: 1, project: { key: 'small', name: 'Small' }, environments: [{ key: 'production', name: 'Production' }],
    flags: [{ key: 'new-checkout', type: 'boolean', variations: [{ key: 'on', value: true }, { key: 'off', value: false }],
      environments: { production: { enabled: true, fallthrough: { variation: 'on' } } } }],
  });
  const small = await api('POST', '/api/v1/projects/small/environments/production/keys', { kind: 'server', name: 'node bench' });
  const smallClient = await Flagstaff.start({ url, key: small.key, sendEvents: false, pollIntervalMs: 3600000 });
  for (const [project, c] of [['bench', client], ['small', smallClient]]) {
    console.log(`== toggle → SDK over the stream, ${samples} toggles of new-checkout in ${project} (${c.flagKeys().length} flags)`);
    await new Promise((r) => setTimeout(r, 200));
    const latencies = [];
    for (let i = 0; i < samples; i++) {
      const changed = new Promise((resolve) => c.once('change', () => resolve(process.hrtime.bigint())));
      const t0 = process.hrtime.bigint();
      await api('PATCH', `/api/v1/projects/${project}/flags/new-checkout/environments/production`, { enabled: i % 2 === 1 });
      const answered = process.hrtime.bigint();
      const t1 = await changed;
      latencies.push([Number(t1 - t0) / 1e6, Number(t1 - answered) / 1e6]);
    }
    const sent = latencies.map((l) => l[0]).sort((a, b) => a - b);
    const afterAnswer = latencies.map((l) => l[1]).sort((a, b) => a - b);
    console.log(`toggle sent → SDK holds it: median ${median(sent).toFixed(1)} ms, p99 ${percentile(sent, 99).toFixed(1)} ms, max ${sent.at(-1).toFixed(1)} ms`);
    console.log(`API answer → SDK holds it:  median ${median(afterAnswer).toFixed(1)} ms, p99 ${percentile(afterAnswer, 99).toFixed(1)} ms`);
  }
  await smallClient.close();
  await OpenFeature.close();
  await client.close();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
