// Shared by the scripts the Rust tests run (tests/it/ofrep_clients.rs, tests/it/admin/browser.rs):
// the line protocol with the Rust test, a static server for a second origin, and Debian's
// Chromium driven headless.
//
// Protocol: the script prints one JSON object per line, `{"step": name, ...}`; when the Rust
// test has something to do at a step (toggle a flag, stop the server), it answers with a line
// on standard input. Any failure prints `{"step": "error", ...}` and exits non-zero.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export function step(name, data = {}) {
  process.stdout.write(JSON.stringify({ step: name, ...data }) + '\n');
}

// Standard input is read from the first `reply` on (the browser scripts that only import
// launchChromium never read it).
let input = null;
const lines = [];
const waiting = [];

/** The next line the Rust test sends; fails after `ms`. */
export function reply(ms = 30000) {
  if (!input) {
    input = readline.createInterface({ input: process.stdin });
    input.on('line', (line) => (waiting.length ? waiting.shift()(line) : lines.push(line)));
  }
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no answer from the test within ' + ms + ' ms')), ms);
    waiting.push((line) => {
      clearTimeout(timer);
      resolve(line);
    });
  });
}

/** Polls `check` (sync or async) until it returns a truthy value; fails after `ms`. */
export async function until(what, check, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function fail(error) {
  step('error', { message: String(error && error.stack ? error.stack : error) });
  process.exit(1);
}

/** Serves `routes` (path → [content type, body]) on 127.0.0.1 at an OS-chosen port: another origin. */
export function staticServer(routes) {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const route = routes[new URL(req.url, 'http://x').pathname];
      if (!route) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'Content-Type': route[0], 'Cache-Control': 'no-store' }).end(route[1]);
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, origin: `http://127.0.0.1:${server.address().port}` }));
  });
}

/** Debian's chromium (the one the Rust test found on PATH, in FLAGSTAFF_CHROMIUM), headless, with a
 * fresh profile (never a downloaded browser); `extraArgs` are added to its command line.
 * `close()` ends it and removes the profile. */
export async function launchChromium(extraArgs = []) {
  const { default: puppeteer } = await import('puppeteer-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'flagstaff-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.FLAGSTAFF_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
  const close = async () => {
    await browser.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { browser, close };
}

/** Forwards the page's console errors and failures to stderr, for the test's report. */
export function watchPage(page, label) {
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') process.stderr.write(`[${label} console.${m.type()}] ${m.text()}\n`);
  });
  page.on('pageerror', (e) => process.stderr.write(`[${label} pageerror] ${e.message}\n`));
}
