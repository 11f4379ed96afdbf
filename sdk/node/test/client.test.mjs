// The client against the real `flagstaff` binary: a toggle reaching it over the stream, the
// cache file, starting with the server down, a kill and restart, polling while the stream is
// blocked, evaluation counts stored by the server, reads that never throw, CommonJS and ESM.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { Flagstaff, keyFingerprint } from '../index.mjs';
import { Server, freePort, shopDocument, tempDir, until } from './helpers.mjs';

const require = createRequire(import.meta.url);

let server;
before(async () => {
  server = await Server.start({ document: shopDocument(), env: { FLAGSTAFF_EVENTS_FLUSH_SECS: '1' } });
});
after(async () => {
  await server?.stop();
});

/** Options for a test client of `server`: short delays, no counts unless asked. */
function options(extra = {}) {
  return {
    url: server.url,
    key: server.key,
    reconnectInitialMs: 50,
    reconnectMaxMs: 400,
    sendEvents: false,
    ...extra,
  };
}

const staff = { targetingKey: 'u-9', email: 'ada@acme.com', plan: 'pro', country: 'FR', seats: 3 };
const other = { targetingKey: 'u-5', email: 'bob@example.com' };

function cachedRevision(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8')).bundle.revision;
}

test('a toggle through the API reaches the client over the stream, and the cache file follows', async (t) => {
  const cacheFile = path.join(tempDir(t), 'flags.json');
  const client = await Flagstaff.start(options({ cacheFile, pollIntervalMs: 3600000 }));
  t.after(() => client.close());
  assert.equal(client.status().source, `server ${server.url}`);
  assert.equal(client.boolValue('new-checkout', staff, false), true);
  assert.equal(client.boolValue('new-checkout', other, true), false);
  await until('the cache file', () => fs.existsSync(cacheFile) && cachedRevision(cacheFile) === client.status().revision);
  assert.equal(JSON.parse(fs.readFileSync(cacheFile, 'utf8')).key, keyFingerprint(server.key));
  await until('the stream', () => client.status().streamConnected);

  const changes = [];
  client.on('change', (c) => changes.push(c));
  client.on('change', () => {
    throw new Error('a listener that fails does not stop the updates');
  });
  await server.toggle('new-checkout', false);
  await until('the change', () => changes.length > 0);
  assert.deepEqual(changes[0].flags, ['new-checkout']);
  assert.equal(client.boolValue('new-checkout', staff, true), false);
  assert.equal(client.evaluate('new-checkout', staff).reason, 'DISABLED');
  await until('the cache file to follow', () => cachedRevision(cacheFile) === changes[0].revision);
  // No temporary file is left beside it.
  assert.deepEqual(fs.readdirSync(path.dirname(cacheFile)), ['flags.json']);
  await server.toggle('new-checkout', true);
  await until('the change back', () => client.boolValue('new-checkout', staff, false));
  await client.close();
});

test('reads never throw: unknown flags, wrong types, odd contexts give the default and a reason', async (t) => {
  const client = await Flagstaff.start(options({ stream: false }));
  t.after(() => client.close());
  assert.equal(client.boolValue('no-such-flag', staff, true), true);
  assert.deepEqual(
    { ...client.evaluate('no-such-flag', staff), errorMessage: undefined },
    { key: 'no-such-flag', value: null, variant: null, reason: 'ERROR', errorCode: 'FLAG_NOT_FOUND', errorMessage: undefined, ruleId: null, prerequisite: null, version: 0 },
  );
  assert.equal(client.stringValue('new-checkout', staff, 'd'), 'd', 'a boolean flag read as a string');
  assert.equal(client.numberValue('banner', staff, 7), 7);
  assert.equal(client.boolValue('price', staff, false), false);
  assert.equal(client.stringValue('banner', staff, 'd'), 'Hello, "world" <script>\t1</script> ✓');
  assert.equal(client.numberValue('price', {}, 0), 9.5);
  assert.deepEqual(client.jsonValue('theme', undefined, null), { bg: '#000', sizes: [1, 2] });
  assert.equal(client.jsonValue('banner', {}, null), 'Hello, "world" <script>\t1</script> ✓');
  // No targetingKey for a rollout.
  assert.equal(client.stringValue('split', {}, 'none'), 'none');
  assert.equal(client.evaluate('split', {}).errorCode, 'TARGETING_KEY_MISSING');
  assert.match(client.evaluate('split', { targetingKey: 'u-1' }).value, /^[xy]$/);
  // Contexts that are not JSON objects.
  const cyclic = { targetingKey: 'u-1' };
  cyclic.self = cyclic;
  for (const bad of [cyclic, { targetingKey: 'u-1', n: 10n }, ['u-1'], 'u-1', 42]) {
    assert.equal(client.boolValue('new-checkout', bad, true), true);
    assert.equal(client.evaluate('new-checkout', bad).errorCode, 'INVALID_CONTEXT');
    assert.deepEqual(client.allFlags(bad), {});
  }
  // Arguments of the wrong type.
  assert.equal(client.boolValue(42, staff, true), true);
  assert.equal(client.boolValue(undefined, staff, false), false);
  assert.equal(client.boolValue('new-checkout', staff, 'yes'), 'yes');
  assert.equal(client.stringValue(null, staff, 'd'), 'd');
  // Null and undefined contexts are empty ones; Dates read as RFC 3339 strings.
  assert.equal(client.evaluate('new-checkout', null).reason, 'DEFAULT');
  assert.equal(client.evaluate('new-checkout', { targetingKey: 'u-staff', at: new Date() }).variant, 'on');
  // A prepared context: read after read, across a configuration change, and not the object's later changes.
  const mutable = { targetingKey: 'u-staff' };
  const prepared = client.context(mutable);
  mutable.targetingKey = 'u-5';
  assert.equal(client.boolValue('new-checkout', prepared, false), true);
  assert.equal(client.boolValue('new-checkout', mutable, true), false);
  assert.throws(() => client.context(cyclic), /JSON object/);
  assert.throws(() => client.context(['u-1']), /JSON object/);
  // The same text twice, then another: each read sees its own context.
  assert.equal(client.boolValue('new-checkout', { targetingKey: 'u-staff' }, false), true);
  assert.equal(client.boolValue('new-checkout', { targetingKey: 'u-staff' }, false), true);
  assert.equal(client.boolValue('new-checkout', { targetingKey: 'u-5' }, true), false);
  // Typed reads of plain objects send the context's text only when it is not the last one sent:
  // an object changed in place, other reads and contexts between, are all seen.
  const changing = { targetingKey: 'u-staff' };
  assert.equal(client.boolValue('new-checkout', changing, false), true);
  changing.targetingKey = 'u-5';
  assert.equal(client.boolValue('new-checkout', changing, true), false);
  assert.equal(client.evaluate('new-checkout', { targetingKey: 'u-staff' }).variant, 'on');
  assert.equal(client.allFlags({ targetingKey: 'u-staff' })['new-checkout'].variant, 'on');
  assert.equal(client.boolValue('new-checkout', changing, true), false);
  assert.equal(client.boolValue('new-checkout', prepared, false), true);
  assert.equal(client.boolValue('new-checkout', changing, true), false);
  assert.equal(client.boolValue('new-checkout', cyclic, true), true);
  assert.equal(client.boolValue('new-checkout', changing, true), false);
  assert.equal(client.stringValue('split', changing, 'none'), client.evaluate('split', changing).value);
  assert.equal(client.stringValue('split', {}, 'none'), 'none');
  assert.equal(client.numberValue('price', changing, 0), 9.5);
  assert.deepEqual(client.jsonValue('theme', changing, null), { bg: '#000', sizes: [1, 2] });
  assert.equal(client.boolValue('no-such-flag', changing, true), true);
  const all = client.allFlags(staff);
  assert.deepEqual(Object.keys(all), ['banner', 'new-checkout', 'price', 'split', 'theme']);
  assert.equal(all['new-checkout'].ruleId, 'staff');
  assert.deepEqual(client.flagKeys(), Object.keys(all));
});

test('start tries the sources in order and says what each answered', async (t) => {
  const dir = tempDir(t);
  const down = `http://127.0.0.1:${await freePort()}`;
  await assert.rejects(
    Flagstaff.start({ url: server.url, key: 'fs_srv_unknown', fallbackUrls: [down], cacheFile: path.join(dir, 'none.json'), timeoutMs: 3000 }),
    (e) => {
      assert.match(e.message, /no source gave a configuration/);
      assert.equal(e.attempts.length, 3);
      assert.match(e.attempts[0], /HTTP 401/);
      assert.match(e.attempts[1], /ECONNREFUSED/);
      assert.match(e.attempts[2], /no such file/);
      return true;
    },
  );
  // A fallback answers when the primary is down.
  const client = await Flagstaff.start(options({ url: down, fallbackUrls: [server.url], stream: false }));
  t.after(() => client.close());
  assert.equal(client.status().source, `server ${server.url}`);
  // A cache file written for another key is not used.
  const cacheFile = path.join(dir, 'flags.json');
  const first = await Flagstaff.start(options({ cacheFile, stream: false }));
  await first.close();
  await until('the cache file', () => fs.existsSync(cacheFile));
  await assert.rejects(Flagstaff.start({ url: down, key: 'fs_srv_other', cacheFile }), /written for another server key/);
  // Options that cannot work are refused at once.
  await assert.rejects(Flagstaff.start({ url: 'ftp://x', key: 'k' }), /http or https/);
  await assert.rejects(Flagstaff.start({ url: server.url, key: '' }), /options.key/);
  await client.close();
});

test('with the server down the cache file serves, then the client catches up', async (t) => {
  const own = await Server.start({ document: shopDocument() });
  t.after(() => own.stop());
  const cacheFile = path.join(tempDir(t), 'flags.json');
  const first = await Flagstaff.start({ url: own.url, key: own.key, cacheFile, sendEvents: false });
  const cached = first.status().revision;
  await first.close();
  await until('the cache file', () => fs.existsSync(cacheFile) && cachedRevision(cacheFile) === cached);

  // A change the cache file does not have, then the server goes away.
  await own.toggle('new-checkout', false);
  await own.kill();
  const client = await Flagstaff.start({
    url: own.url, key: own.key, cacheFile, timeoutMs: 1000, pollIntervalMs: 100, reconnectInitialMs: 50, reconnectMaxMs: 200, sendEvents: false,
  });
  t.after(() => client.close());
  assert.equal(client.status().source, `cache file ${cacheFile}`);
  assert.equal(client.status().revision, cached);
  assert.equal(client.boolValue('new-checkout', staff, false), true, 'the cached configuration: still on');
  assert.equal(client.status().connected, false);

  const changes = [];
  client.on('change', (c) => changes.push(c));
  await own.restart();
  await until('the client to catch up', () => changes.length > 0);
  assert.ok(changes[0].revision > cached);
  assert.deepEqual(changes[0].flags, ['new-checkout']);
  assert.equal(client.boolValue('new-checkout', staff, true), false);
  assert.equal(client.status().source, `server ${own.url}`);
  await until('the cache file to follow', () => cachedRevision(cacheFile) === changes[0].revision);
  await client.close();
});

test('the client resumes after the server is killed and restarted', async (t) => {
  const own = await Server.start({ document: shopDocument() });
  t.after(() => own.stop());
  const client = await Flagstaff.start({
    url: own.url, key: own.key, pollIntervalMs: 3600000, reconnectInitialMs: 50, reconnectMaxMs: 200, sendEvents: false,
  });
  t.after(() => client.close());
  const events = [];
  client.on('disconnected', () => events.push('disconnected'));
  client.on('connected', () => events.push('connected'));
  await until('the stream', () => client.status().streamConnected);
  await own.kill();
  await until('the client to notice', () => events.includes('disconnected'));
  assert.equal(client.boolValue('new-checkout', staff, false), true, 'reads go on from memory');
  await own.restart();
  await until('the stream again', () => client.status().streamConnected && events.at(-1) === 'connected');
  await own.toggle('new-checkout', false);
  await until('the toggle after the restart', () => !client.boolValue('new-checkout', staff, true));
});

/** A proxy to `target` that refuses the stream path (503) and forwards everything else. */
function proxyWithoutStream(target) {
  const upstream = new URL(target);
  const proxy = http.createServer((req, res) => {
    if (req.url.startsWith('/sdk/v1/stream')) {
      proxy.refused = (proxy.refused || 0) + 1;
      return res.writeHead(503).end();
    }
    const forward = http.request(
      { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    forward.on('error', () => res.writeHead(502).end());
    req.pipe(forward);
  });
  return new Promise((resolve) => proxy.listen(0, '127.0.0.1', () => resolve(proxy)));
}

test('polling delivers while the stream is blocked', async (t) => {
  const proxy = await proxyWithoutStream(server.url);
  t.after(() => proxy.close());
  const client = await Flagstaff.start(options({ url: `http://127.0.0.1:${proxy.address().port}`, pollIntervalMs: 100 }));
  t.after(() => client.close());
  await until('the stream to be refused', () => proxy.refused > 0);
  assert.equal(client.status().streamConnected, false);
  await server.patch('banner', { fallthrough: { variation: 'b' } });
  t.after(() => server.patch('banner', { fallthrough: { variation: 'a' } }));
  await until('the change by polling', () => client.stringValue('banner', {}, '') === 'b');
  assert.equal(client.status().streamConnected, false);
});

test('evaluation counts reach the server', async (t) => {
  const own = await Server.start({ document: shopDocument(), env: { FLAGSTAFF_EVENTS_FLUSH_SECS: '1' } });
  t.after(() => own.stop());
  const client = await Flagstaff.start({ url: own.url, key: own.key, stream: false, sendEvents: true, eventsIntervalMs: 3600000 });
  for (let i = 0; i < 5; i++) assert.equal(client.boolValue('new-checkout', staff, false), true);
  assert.equal(client.boolValue('new-checkout', other, true), false);
  assert.equal(client.evaluate('banner', other).variant, 'a');
  // Not served: not counted (wrong type, unknown flag, error); allFlags is not counted either.
  assert.equal(client.stringValue('new-checkout', staff, 'd'), 'd');
  client.boolValue('no-such-flag', staff, false);
  client.stringValue('split', {}, 'd');
  client.allFlags(staff);
  await client.close();
  const expected = [
    ['banner', 'a', 1],
    ['new-checkout', 'off', 1],
    ['new-checkout', 'on', 5],
  ];
  await until('the counts in the database', () => JSON.stringify(own.storedCounts()) === JSON.stringify(expected));
});

test('CommonJS and ESM load the same client', async () => {
  const cjs = require('../index.js');
  const esm = await import('../index.mjs');
  assert.equal(cjs.Flagstaff, esm.Flagstaff);
  assert.equal(typeof cjs.FlagstaffProvider, 'function');
  assert.equal(cjs.FlagstaffProvider, esm.FlagstaffProvider);
});
