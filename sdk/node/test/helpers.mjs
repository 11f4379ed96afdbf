// Shared by the tests: the real `flagstaff` binary on a loopback port with a temporary data dir
// (a user and an admin token made with its CLI), the API calls the tests make, and waiting.
//
// Deadlines here are how long a test waits for something that must happen, never a measure of
// speed.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');
export const BIN = process.env.FLAGSTAFF_BIN || path.join(REPO, 'target/debug/flagstaff');

/** How long a test waits for something that must happen (generous: the machine is shared). */
export const PATIENCE = 20000;

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The environment of `flagstaff` without the machine's FLAGSTAFF_* settings. */
function cleanEnv(dir, extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLAGSTAFF_')) env[k] = v;
  return { ...env, FLAGSTAFF_DATA_DIR: dir, NO_COLOR: '1', FLAGSTAFF_LOG: 'warn', ...extra };
}

export async function until(what, check, ms = PATIENCE) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A `flagstaff serve` child process with its data dir, admin token and a server key of shop/production. */
export class Server {
  static async start({ document, env = {}, project = 'shop' } = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagstaff-node-sdk-'));
    const server = new Server(dir, await freePort(), env);
    execFileSync(BIN, ['user', 'create', '--email', 'node@example.test', '--role', 'admin', '--password-stdin'], {
      env: cleanEnv(dir),
      input: 'correct horse battery staple\n',
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    server.admin = execFileSync(BIN, ['token', 'create', '--email', 'node@example.test', '--name', 'node-sdk-tests'], {
      env: cleanEnv(dir),
      encoding: 'utf8',
    }).trim();
    await server.restart();
    if (document) {
      const [status, body] = await server.api('POST', '/api/v1/import', document);
      if (status >= 300) throw new Error(`import: ${status} ${JSON.stringify(body)}`);
    }
    server.project = project;
    server.key = await server.newKey('server');
    return server;
  }

  constructor(dir, port, env) {
    this.dir = dir;
    this.port = port;
    this.env = env;
    this.url = `http://127.0.0.1:${port}`;
    this.child = null;
  }

  get logPath() {
    return path.join(this.dir, 'server.log');
  }

  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts the process (again) on the same port and data dir; resolves when /healthz answers. */
  async restart() {
    if (this.child) throw new Error('the server is running');
    const log = fs.openSync(this.logPath, 'a');
    const child = spawn(BIN, ['serve', '--bind', `127.0.0.1:${this.port}`], {
      env: cleanEnv(this.dir, this.env),
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    let exited = null;
    child.once('exit', (code, signal) => (exited = `${code ?? signal}`));
    this.child = child;
    await until('flagstaff serve to answer /healthz', async () => {
      if (exited) throw new Error(`flagstaff serve exited with ${exited}: ${this.log()}`);
      try {
        return (await fetch(`${this.url}/healthz`)).status === 200;
      } catch {
        return false;
      }
    });
  }

  /** Kills the process (SIGKILL, by its PID) and waits for it to exit. */
  async kill() {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise((resolve) => {
      child.once('exit', resolve);
      child.kill('SIGKILL');
    });
  }

  /** Stops the server and removes its data dir. */
  async stop() {
    await this.kill();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  async api(method, p, body) {
    const response = await fetch(`${this.url}${p}`, {
      method,
      headers: { Authorization: `Bearer ${this.admin}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return [response.status, json];
  }

  async newKey(kind, environment = 'production') {
    const [status, body] = await this.api('POST', `/api/v1/projects/${this.project}/environments/${environment}/keys`, {
      kind,
      name: `node sdk tests ${kind}`,
    });
    if (status !== 201) throw new Error(`key: ${status} ${JSON.stringify(body)}`);
    return body.key;
  }

  /** PATCHes a flag's production state. */
  async patch(flag, state) {
    const [status, body] = await this.api('PATCH', `/api/v1/projects/${this.project}/flags/${flag}/environments/production`, state);
    if (status !== 200) throw new Error(`patch ${flag}: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  toggle(flag, enabled) {
    return this.patch(flag, { enabled });
  }

  /**
   * Evaluation counts the server has stored: [[flag, variant, count]] sorted (read with Python's
   * sqlite3 from the operational database, where counts live: DESIGN.md §5).
   */
  storedCounts() {
    const script = [
      'import sqlite3, sys, json',
      "c = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)",
      "rows = c.execute('SELECT flag_key, variant, sum(count) FROM evaluation_counts GROUP BY flag_key, variant ORDER BY 1, 2').fetchall()",
      'print(json.dumps(rows))',
    ].join('\n');
    const out = execFileSync('python3', ['-c', script, path.join(this.dir, 'work', 'flagstaff.operational.db')], { encoding: 'utf8' });
    return JSON.parse(out);
  }
}

/**
 * A temporary directory removed at the end of the test. A test closes its clients before it
 * ends (hooks run in the order they were added, so this one would run first).
 */
export function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flagstaff-node-cache-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The shop document the client tests use: hostile strings, every type, a rollout, a rule. */
export function shopDocument() {
  return {
    flagstaff: 1,
    project: { key: 'shop', name: 'Shop' },
    environments: [{ key: 'production', name: 'Production' }],
    segments: [{ key: 'staff', name: 'Staff', included: ['u-staff'], rules: [{ clauses: [{ attribute: 'email', op: 'ends_with', values: ['@acme.com'] }] }] }],
    flags: [
      {
        key: 'new-checkout',
        type: 'boolean',
        variations: [{ key: 'on', value: true }, { key: 'off', value: false }],
        environments: {
          production: {
            enabled: true,
            rules: [{ id: 'staff', clauses: [{ op: 'in_segment', values: ['staff'] }], serve: { variation: 'on' } }],
            fallthrough: { variation: 'off' },
          },
        },
      },
      {
        key: 'banner',
        type: 'string',
        variations: [{ key: 'a', value: 'Hello, "world" <script>\t1</script> ✓' }, { key: 'b', value: 'b' }],
        environments: { production: { enabled: true, fallthrough: { variation: 'a' } } },
      },
      {
        key: 'split',
        type: 'string',
        variations: [{ key: 'x', value: 'x' }, { key: 'y', value: 'y' }],
        environments: {
          production: {
            enabled: true,
            fallthrough: { rollout: { variations: [{ variation: 'x', weight: 50000 }, { variation: 'y', weight: 50000 }] } },
          },
        },
      },
      {
        key: 'price',
        kind: 'config',
        type: 'number',
        variations: [{ key: 'std', value: 9.5 }],
        environments: { production: { enabled: true, fallthrough: { variation: 'std' } } },
      },
      {
        key: 'theme',
        kind: 'config',
        type: 'json',
        variations: [{ key: 'dark', value: { bg: '#000', sizes: [1, 2] } }],
        environments: { production: { enabled: true, fallthrough: { variation: 'dark' } } },
      },
    ],
  };
}
