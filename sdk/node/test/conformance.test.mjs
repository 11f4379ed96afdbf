// The conformance corpus (eval/testdata/conformance.json) through the public client: each
// suite's bundle is served over a loopback socket as GET /sdk/v1/bundle, and `evaluate` — and
// the typed reads, which must agree with it, with the context as an object and prepared — give
// every case's expected result.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';

import { Flagstaff } from '../index.mjs';
import { REPO } from './helpers.mjs';

const corpus = JSON.parse(fs.readFileSync(path.join(REPO, 'eval/testdata/conformance.json'), 'utf8'));

function serve(bytes) {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      if (req.url !== '/sdk/v1/bundle') return res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': 'application/json', ETag: '"c1"' }).end(bytes);
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

test('the client passes every case of the conformance corpus', async () => {
  let count = 0;
  const failures = [];
  for (const suite of corpus.suites) {
    const server = await serve(JSON.stringify(suite.bundle));
    const client = await Flagstaff.start({
      url: `http://127.0.0.1:${server.address().port}`,
      key: 'fs_srv_conformance',
      stream: false,
      sendEvents: false,
    });
    try {
      for (const c of suite.cases) {
        count += 1;
        const got = client.evaluate(c.flag, c.context);
        for (const [field, expected] of Object.entries(c.expect)) {
          try {
            assert.deepStrictEqual(got[field], expected);
          } catch {
            failures.push(`${suite.name} / ${c.name}: ${field} is ${JSON.stringify(got[field])} (expected ${JSON.stringify(expected)})`);
          }
        }
        // The typed reads agree: the value when it has their type, else the default.
        const v = c.expect.value;
        const sentinel = { none: true };
        assert.equal(client.boolValue(c.flag, c.context, typeof v === 'boolean' ? !v : true), typeof v === 'boolean' ? v : true, c.name);
        assert.equal(client.stringValue(c.flag, c.context, '\u0000'), typeof v === 'string' ? v : '\u0000', c.name);
        assert.equal(client.numberValue(c.flag, c.context, -0.5), typeof v === 'number' ? v : -0.5, c.name);
        assert.deepStrictEqual(client.jsonValue(c.flag, c.context, sentinel), v === null ? sentinel : v, c.name);
        // A prepared context gives the same, read after read.
        const prepared = client.context(c.context);
        assert.deepStrictEqual(client.evaluate(c.flag, prepared), got, c.name);
        assert.deepStrictEqual(client.jsonValue(c.flag, prepared, sentinel), v === null ? sentinel : v, c.name);
        assert.equal(client.boolValue(c.flag, prepared, typeof v === 'boolean' ? !v : true), typeof v === 'boolean' ? v : true, c.name);
        assert.equal(client.stringValue(c.flag, prepared, '\u0000'), typeof v === 'string' ? v : '\u0000', c.name);
        assert.equal(client.numberValue(c.flag, prepared, -0.5), typeof v === 'number' ? v : -0.5, c.name);
        const all = client.allFlags(c.context);
        assert.deepStrictEqual(client.allFlags(prepared), all, c.name);
        if (c.expect.errorCode !== 'FLAG_NOT_FOUND') assert.deepStrictEqual(all[c.flag], got, c.name);
      }
    } finally {
      await client.close();
      server.close();
    }
  }
  assert.ok(count >= 150, `only ${count} cases`);
  assert.deepStrictEqual(failures, []);
});
