'use strict';
// @flagstaff/node: Flagstaff's Node.js server SDK. Flags are evaluated in-process by the native
// addon (the server's own engine, sdk/node/native); this file only fetches bundles, follows the
// change stream, polls, keeps the cache file and sends evaluation counts. No rule is evaluated in
// JavaScript. The behaviour mirrors the Rust SDK (sdk/rust) and docs/sdk-protocol.md.

const { EventEmitter } = require('node:events');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const { Engine, PreparedContext } = require('./native.js');

const VERSION = require('./package.json').version;
const USER_AGENT = `flagstaff-sdk-node/${VERSION}`;
/** The most (flag, variant) counts the server takes in one report. */
const MAX_EVENT_ENTRIES = 10000;
const CACHE_FORMAT = 1;

const DEFAULTS = {
  fallbackUrls: [],
  cacheFile: null,
  timeoutMs: 5000,
  requestTimeoutMs: 10000,
  pollIntervalMs: 60000,
  stream: true,
  streamUrl: null,
  streamIdleTimeoutMs: 45000,
  reconnectInitialMs: 1000,
  reconnectMaxMs: 30000,
  sendEvents: true,
  eventsIntervalMs: 60000,
  logger: null,
};

/** The context as JSON text for the engine; `null` when it cannot be one (not an object, cycles, BigInt). */
function contextJson(context) {
  if (context === undefined || context === null) return '{}';
  if (typeof context !== 'object' || Array.isArray(context)) return null;
  try {
    return JSON.stringify(context);
  } catch {
    return null;
  }
}

function invalidContext(key) {
  return {
    key: String(key),
    value: null,
    variant: null,
    reason: 'ERROR',
    errorCode: 'INVALID_CONTEXT',
    errorMessage: 'the context is not a JSON object',
    ruleId: null,
    prerequisite: null,
    version: 0,
  };
}

/** A fingerprint of the server key that does not reveal it (the Rust SDK's, so both share cache files). */
function keyFingerprint(key) {
  return crypto.createHash('sha256').update(`flagstaff-sdk-cache:${key}`).digest('hex').slice(0, 16);
}

function normaliseUrl(url, what) {
  if (typeof url !== 'string') throw new TypeError(`${what} must be a string URL`);
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new TypeError(`${what} is not a URL: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TypeError(`${what} must be http or https: ${JSON.stringify(url)}`);
  }
  return parsed.href.replace(/\/+$/, '');
}

/** Exponential delays from `initial` to `max`, each drawn from the upper half of its step. */
class Backoff {
  constructor(initial, max) {
    this.initial = Math.max(1, initial);
    this.max = Math.max(this.initial, max);
    this.attempt = 0;
  }
  next() {
    const step = Math.min(this.max, this.initial * 2 ** Math.min(this.attempt, 30));
    this.attempt += 1;
    return step * (0.5 + Math.random() / 2);
  }
  reset() {
    this.attempt = 0;
  }
}

class FetchError extends Error {}

/** What a bundle request gave: {bytes, etag} or {notModified: true}. */
async function fetchBundle(base, authorization, etag, timeoutMs) {
  const headers = { Authorization: authorization, 'User-Agent': USER_AGENT, Accept: 'application/json' };
  if (etag) headers['If-None-Match'] = etag;
  let response;
  try {
    response = await fetch(`${base}/sdk/v1/bundle`, { headers, signal: AbortSignal.timeout(Math.max(1, timeoutMs)) });
  } catch (e) {
    throw new FetchError(describeFetchError(e));
  }
  if (response.status === 304) {
    await response.body?.cancel();
    return { notModified: true };
  }
  if (!response.ok) {
    const text = await response.text().catch(() => '');
    throw new FetchError(`HTTP ${response.status} ${text.slice(0, 200)}`.trim());
  }
  const bytes = Buffer.from(await response.arrayBuffer());
  return { bytes, etag: response.headers.get('etag') };
}

function describeFetchError(e) {
  if (e && (e.name === 'TimeoutError' || e.name === 'AbortError')) return 'timed out';
  const cause = e && e.cause;
  if (cause && cause.code) return `${cause.code}${cause.message ? `: ${cause.message}` : ''}`;
  return String((e && e.message) || e);
}

/** Reads the cache file; the bundle's bytes exactly as the server sent them. */
function readCache(file, fingerprint) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(e.code === 'ENOENT' ? 'no such file' : `cannot read it: ${e.message}`);
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`not a Flagstaff SDK cache file: ${e.message}`);
  }
  if (!parsed || parsed.flagstaff_sdk_cache !== CACHE_FORMAT) {
    throw new Error(`cache format ${parsed && parsed.flagstaff_sdk_cache} is not supported (expected ${CACHE_FORMAT})`);
  }
  if (parsed.key !== fingerprint) throw new Error('it was written for another server key');
  // The file is written with the bundle last, as served: take its bytes rather than
  // re-serialising (JSON.parse would round large integers).
  const at = text.indexOf(',"bundle":');
  const end = text.lastIndexOf('}');
  const bytes = at > 0 && end > at ? Buffer.from(text.slice(at + 10, end), 'utf8') : Buffer.from(JSON.stringify(parsed.bundle));
  return { bytes, etag: typeof parsed.etag === 'string' ? parsed.etag : null };
}

/** Replaces the cache file atomically: a temporary file in the same directory, synced, renamed. */
async function writeCache(file, fingerprint, etag, bytes) {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  const head = `{"flagstaff_sdk_cache":${CACHE_FORMAT},"key":${JSON.stringify(fingerprint)},"etag":${JSON.stringify(etag ?? null)},"saved_at":${JSON.stringify(new Date().toISOString())},"bundle":`;
  const handle = await fs.promises.open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(Buffer.concat([Buffer.from(head), bytes, Buffer.from('}\n')]));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fs.promises.rm(tmp, { force: true });
    throw e;
  }
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

/**
 * A Flagstaff client: `await Flagstaff.start({url, key, …})`. Reads (`boolValue` and friends)
 * evaluate in-process on the configuration held; they never wait for the network and never
 * throw. Emits `change` ({revision, flags, source}) after each new configuration, `connected`
 * and `disconnected` (with the reason) when the servers come and go.
 */
class Flagstaff extends EventEmitter {
  /** Loads the configuration from the first source that answers and starts the background work. */
  static async start(options) {
    const client = new Flagstaff(options);
    await client._load();
    client._run();
    return client;
  }

  constructor(options) {
    super();
    if (!options || typeof options !== 'object') throw new TypeError('Flagstaff.start needs an options object');
    const o = { ...DEFAULTS, ...options };
    // Delays set by the caller are kept; otherwise the server's `retry:` hint sets the first one.
    o.reconnectConfigured = options.reconnectInitialMs !== undefined || options.reconnectMaxMs !== undefined;
    if (typeof o.key !== 'string' || !o.key.trim()) throw new TypeError('options.key must be a server key');
    if (/[\r\n]/.test(o.key)) throw new TypeError('options.key holds characters not allowed in an HTTP header');
    this._urls = [normaliseUrl(o.url, 'options.url'), ...(o.fallbackUrls || []).map((u, i) => normaliseUrl(u, `options.fallbackUrls[${i}]`))];
    this._streamUrl = o.streamUrl ? normaliseUrl(o.streamUrl, 'options.streamUrl') : null;
    this._authorization = `Bearer ${o.key.trim()}`;
    this._fingerprint = keyFingerprint(o.key.trim());
    this._options = o;
    this._log = o.logger || { warn() {}, info() {}, debug() {} };
    this._engine = null;
    // For reads of plain objects (`_at`): flag key → position in the engine, and the context
    // text the engine holds for them.
    this._index = new Map();
    this._atText = null;
    this._atSend = null;
    this._etag = null;
    this._source = null;
    this._closed = false;
    this._abort = new AbortController();
    this._streamConnected = false;
    this._connected = false;
    this._lastEventId = null;
    this._pending = new Map();
    this._pendingStart = Date.now();
    this._dropped = 0;
    this._refreshing = null;
    this._timers = [];
  }

  // ----- reads: in-process, never throw ---------------------------------------------------

  /**
   * A context prepared for many reads: `client.context({targetingKey: …})` gives a value to pass
   * to every read instead of the object. The object is turned into the engine's form once, so
   * reads skip that work (see BENCHMARKS.md, "Node SDK"); later changes to the object are not
   * seen. Prepared contexts outlive configuration changes. Throws unless `context` is a JSON
   * object.
   */
  context(context) {
    const ctx = contextJson(context);
    if (ctx === null) throw new TypeError('the context must be a JSON object (no cycles, no BigInt)');
    return new PreparedContext(ctx);
  }

  /**
   * Where a typed read of a plain object goes: the flag's position in the engine (so the key
   * does not cross into the addon) and the context's text, sent only when it differs from the
   * last one (the addon keeps that one parsed). `undefined` for an unknown flag, `null` for a
   * context that is not a JSON object.
   */
  _at(key, context) {
    const index = this._index.get(key);
    if (index === undefined) return undefined;
    const text = contextJson(context);
    if (text === null) return null;
    if (text === this._atText) return index;
    this._atText = text;
    this._atSend = text;
    return index;
  }

  /** The context text to send with the read `_at` prepared (once), else null. */
  _sent() {
    const text = this._atSend;
    this._atSend = null;
    return text;
  }

  /** The boolean value of `key` for `context`, or `defaultValue` (unknown flag, other type, error). */
  boolValue(key, context, defaultValue) {
    if (typeof defaultValue !== 'boolean') return defaultValue;
    try {
      if (context instanceof PreparedContext) return this._engine.boolValueIn(key, context, defaultValue);
      const at = this._at(key, context);
      return at == null ? defaultValue : this._engine.boolValueAt(at, this._sent(), defaultValue);
    } catch {
      return defaultValue;
    }
  }

  /** The string value of `key`, or `defaultValue`. */
  stringValue(key, context, defaultValue) {
    try {
      if (context instanceof PreparedContext) return this._engine.stringValueIn(key, context) ?? defaultValue;
      const at = this._at(key, context);
      return (at == null ? null : this._engine.stringValueAt(at, this._sent())) ?? defaultValue;
    } catch {
      return defaultValue;
    }
  }

  /** The number value of `key`, or `defaultValue`. */
  numberValue(key, context, defaultValue) {
    try {
      if (context instanceof PreparedContext) return this._engine.numberValueIn(key, context) ?? defaultValue;
      const at = this._at(key, context);
      return (at == null ? null : this._engine.numberValueAt(at, this._sent())) ?? defaultValue;
    } catch {
      return defaultValue;
    }
  }

  /** The value of `key` whatever its type (JSON flags and configs), or `defaultValue`. */
  jsonValue(key, context, defaultValue) {
    try {
      let text;
      if (context instanceof PreparedContext) text = this._engine.jsonValueIn(key, context);
      else {
        const at = this._at(key, context);
        text = at == null ? null : this._engine.jsonValueAt(at, this._sent());
      }
      return text === null ? defaultValue : JSON.parse(text);
    } catch {
      return defaultValue;
    }
  }

  /**
   * The full result: {key, value, variant, reason, errorCode, errorMessage?, ruleId,
   * prerequisite, version}. `value` and `variant` are null on error.
   */
  evaluate(key, context) {
    return this._resolve(key, context, '');
  }

  /** `evaluate` requiring a type ('boolean', 'string', 'number', 'object'): another is TYPE_MISMATCH. */
  _resolve(key, context, expected) {
    try {
      if (context instanceof PreparedContext) return JSON.parse(this._engine.evaluateIn(String(key), context, expected));
      const ctx = contextJson(context);
      if (ctx === null) return invalidContext(key);
      return JSON.parse(this._engine.evaluate(String(key), ctx, expected));
    } catch (e) {
      return { ...invalidContext(key), errorCode: 'GENERAL', errorMessage: String(e && e.message) };
    }
  }

  /** Every flag and config evaluated for `context`: {key: evaluation}. Not counted as uses. */
  allFlags(context) {
    try {
      if (context instanceof PreparedContext) return JSON.parse(this._engine.allFlagsIn(context));
      const ctx = contextJson(context);
      const text = ctx === null ? null : this._engine.allFlags(ctx);
      return text === null ? {} : JSON.parse(text);
    } catch {
      return {};
    }
  }

  /** The keys of every flag and config, sorted. */
  flagKeys() {
    return this._engine.flagKeys();
  }

  /** What the client holds and how it is connected. */
  status() {
    return {
      project: this._engine.project,
      environment: this._engine.environment,
      revision: this._engine.revision,
      etag: this._etag,
      source: this._source,
      flags: this._engine.flagCount,
      streamConnected: this._streamConnected,
      connected: this._connected,
    };
  }

  /**
   * Stops the background work after sending the counts not yet sent (at most 2 s) and finishing
   * a cache file write under way. Reads keep working.
   */
  async close() {
    if (this._closed) return;
    this._closed = true;
    this._abort.abort();
    for (const timer of this._timers) clearInterval(timer);
    if (this._options.sendEvents) await this._sendEvents(2000).catch(() => {});
    if (this._streamTask) await this._streamTask.catch(() => {});
    // A refresh in flight may still install and save; nothing is left running after close().
    if (this._refreshing) await this._refreshing.catch(() => {});
    if (this._cacheWrite) await this._cacheWrite;
  }

  // ----- loading and installing ------------------------------------------------------------

  async _load() {
    const attempts = [];
    const deadline = Date.now() + this._options.timeoutMs;
    for (let i = 0; i < this._urls.length; i++) {
      const source = `server ${this._urls[i]}`;
      const left = deadline - Date.now();
      if (left <= 0) {
        attempts.push(`${source}: not tried: the timeout was used up`);
        continue;
      }
      try {
        const fetched = await fetchBundle(this._urls[i], this._authorization, null, left / (this._urls.length - i));
        if (fetched.notModified) throw new Error('HTTP 304 to an unconditional request');
        this._install(fetched.bytes, fetched.etag, source);
        this._setConnected(true);
        this._saveCache(fetched.bytes);
        break;
      } catch (e) {
        attempts.push(`${source}: ${e.message}`);
      }
    }
    if (!this._engine && this._options.cacheFile) {
      const source = `cache file ${this._options.cacheFile}`;
      try {
        const cached = readCache(this._options.cacheFile, this._fingerprint);
        this._install(cached.bytes, cached.etag, source);
      } catch (e) {
        attempts.push(`${source}: ${e.message}`);
      }
    }
    if (!this._engine) {
      const error = new Error(`no source gave a configuration: ${attempts.join('; ')}`);
      error.attempts = attempts;
      throw error;
    }
    for (const attempt of attempts) this._log.warn(`flagstaff: configuration source failed: ${attempt}`);
  }

  /** Compiles `bytes` and makes them the configuration; throws when they are not a bundle. */
  _install(bytes, etag, source) {
    const engine = new Engine(bytes);
    const old = this._engine;
    this._engine = engine;
    this._index = new Map(engine.flagKeys().map((key, i) => [key, i]));
    this._atText = null;
    this._atSend = null;
    this._etag = etag || null;
    this._source = source;
    if (old) {
      // Reads are synchronous: nothing reads the old engine any more.
      this._gather(old);
      this._tell('change', { revision: engine.revision, flags: engine.changedSince(old), source });
    }
  }

  _saveCache(bytes) {
    const file = this._options.cacheFile;
    if (!file) return;
    const etag = this._etag;
    this._cacheWrite = (this._cacheWrite || Promise.resolve())
      .then(() => writeCache(file, this._fingerprint, etag, bytes))
      .catch((e) => this._log.warn(`flagstaff: cannot write the cache file ${file}: ${e.message}`));
  }

  _setConnected(connected, reason) {
    if (connected === this._connected) return;
    this._connected = connected;
    if (connected) this._tell('connected');
    else this._tell('disconnected', { reason });
  }

  /** Emits an event; a listener that throws is logged, never allowed to break the updates. */
  _tell(event, ...args) {
    try {
      this.emit(event, ...args);
    } catch (e) {
      this._log.warn(`flagstaff: a '${event}' listener threw: ${e && e.stack ? e.stack : e}`);
    }
  }

  /**
   * Fetches the bundle with If-None-Match from `preferred` then the other servers, installing it
   * when new. One refresh at a time: a call during one waits for it and runs once more.
   */
  _refresh(preferred) {
    if (this._refreshing) {
      this._refreshAgain = true;
      return this._refreshing;
    }
    this._refreshing = (async () => {
      let ok;
      do {
        this._refreshAgain = false;
        ok = await this._refreshOnce(preferred);
      } while (this._refreshAgain && !this._closed);
      return ok;
    })().finally(() => {
      this._refreshing = null;
    });
    return this._refreshing;
  }

  async _refreshOnce(preferred) {
    const order = [...new Set([preferred, ...this._urls].filter((u) => u && this._urls.includes(u)))];
    const errors = [];
    for (const base of order) {
      if (this._closed) return false;
      try {
        const fetched = await fetchBundle(base, this._authorization, this._etag, this._options.requestTimeoutMs);
        if (!fetched.notModified && !(fetched.etag && fetched.etag === this._etag)) {
          this._install(fetched.bytes, fetched.etag, `server ${base}`);
          this._saveCache(fetched.bytes);
        }
        this._setConnected(true);
        return true;
      } catch (e) {
        errors.push(`${base}: ${e.message}`);
      }
    }
    if (!this._closed) {
      this._log.warn(`flagstaff: no server gave the configuration; keeping the one held: ${errors.join('; ')}`);
      this._setConnected(false, errors.join('; '));
    }
    return false;
  }

  // ----- background: stream, polling, events -------------------------------------------------

  _run() {
    const o = this._options;
    const every = (ms, fn) => {
      const timer = setInterval(fn, Math.max(10, ms));
      this._timers.push(timer);
    };
    // Polling: the safety net while the stream is up, the way changes arrive while it is down.
    every(o.pollIntervalMs, () => {
      if (!this._closed) this._refresh(null);
    });
    if (o.sendEvents) every(o.eventsIntervalMs, () => this._sendEvents(o.requestTimeoutMs).catch(() => {}));
    if (o.stream) this._streamTask = this._followStream();
    else if (!this._connected) this._refresh(null);
  }

  async _followStream() {
    const o = this._options;
    const backoff = new Backoff(o.reconnectInitialMs, o.reconnectMaxMs);
    const bases = this._streamUrl ? [this._streamUrl] : this._urls;
    let next = 0;
    while (!this._closed) {
      const base = bases[next % bases.length];
      let heard = false;
      try {
        heard = await this._streamOnce(base, backoff);
      } catch (e) {
        if (!this._closed) this._log.debug(`flagstaff: stream ${base}: ${describeFetchError(e)}`);
      }
      const wasConnected = this._streamConnected;
      this._streamConnected = false;
      if (this._closed) break;
      if (!heard) next += 1;
      // The stream dropped: see at once whether a server still answers (and what changed).
      if (wasConnected) this._refresh(null);
      else if (!this._connected) this._refresh(null);
      await sleep(backoff.next(), this._abort.signal);
    }
  }

  /** One stream connection, until it ends; true when the server accepted it. */
  async _streamOnce(base, backoff) {
    const headers = { Authorization: this._authorization, Accept: 'text/event-stream', 'User-Agent': USER_AGENT };
    if (this._lastEventId !== null) headers['Last-Event-ID'] = this._lastEventId;
    const idle = new AbortController();
    const signal = AbortSignal.any([this._abort.signal, idle.signal]);
    let timer = setTimeout(() => idle.abort(), this._options.requestTimeoutMs);
    const alive = () => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), this._options.streamIdleTimeoutMs);
    };
    let heard = false;
    try {
      const response = await fetch(`${base}/sdk/v1/stream`, { headers, signal });
      if (!response.ok || !response.body) {
        await response.body?.cancel();
        throw new FetchError(`HTTP ${response.status}`);
      }
      // Connected: a server answers (with Last-Event-ID at the current revision it sends no
      // event until the next change).
      this._streamConnected = true;
      heard = true;
      backoff.reset();
      this._setConnected(true);
      alive();
      const decoder = new TextDecoder();
      let buffer = '';
      let event = { id: null, data: [] };
      for await (const chunk of response.body) {
        alive();
        buffer += decoder.decode(chunk, { stream: true });
        let newline;
        while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
          if (line === '') {
            if (event.data.length) this._onStreamEvent(base, event);
            event = { id: null, data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'data') event.data.push(value);
          else if (field === 'id' && !value.includes('\0')) event.id = value;
          else if (field === 'retry' && /^\d+$/.test(value) && !this._options.reconnectConfigured) {
            backoff.initial = Math.max(1, Number(value));
            backoff.max = Math.max(backoff.max, backoff.initial);
          }
        }
        if (buffer.length > 1 << 20) throw new FetchError('stream line too long');
      }
    } finally {
      clearTimeout(timer);
    }
    return heard;
  }

  _onStreamEvent(base, event) {
    if (event.id !== null) this._lastEventId = event.id;
    let message = {};
    try {
      message = JSON.parse(event.data.join('\n'));
    } catch {
      // A hint we cannot read still means "something changed".
    }
    this._setConnected(true);
    if (message && typeof message.etag === 'string' && message.etag === this._etag) return;
    if (message && message.etag === undefined && message.revision === this._engine.revision) return;
    this._refresh(this._urls.includes(base) ? base : null);
  }

  /** Moves `engine`'s counts into the pending table (bounded). */
  _gather(engine) {
    let counts;
    try {
      counts = JSON.parse(engine.drainCounts());
    } catch {
      return;
    }
    for (const [flag, variant, n] of counts) {
      const key = `${flag}\u0000${variant}`;
      if (this._pending.has(key)) this._pending.set(key, this._pending.get(key) + n);
      else if (this._pending.size < MAX_EVENT_ENTRIES) this._pending.set(key, n);
      else this._dropped += n;
    }
  }

  /** Sends the pending counts to the first server that takes them; kept for next time on failure. */
  async _sendEvents(timeoutMs) {
    if (this._sending) return this._sending;
    this._sending = (async () => {
      this._gather(this._engine);
      if (this._dropped) {
        this._log.warn(`flagstaff: ${this._dropped} evaluation counts dropped (more than ${MAX_EVENT_ENTRIES} flag variations between sends)`);
        this._dropped = 0;
      }
      if (this._pending.size === 0) {
        this._pendingStart = Date.now();
        return true;
      }
      const end = Date.now();
      const start = Math.min(this._pendingStart, end);
      // Counts gathered while the request is in flight go to a fresh table.
      const sent = this._pending;
      this._pending = new Map();
      this._pendingStart = end;
      const body = JSON.stringify({
        start: new Date(start).toISOString(),
        end: new Date(end).toISOString(),
        counts: [...sent].map(([key, count]) => {
          const [flag, variant] = key.split('\u0000');
          return { flag, variant, count: Math.min(count, 1e12) };
        }),
      });
      // Each server twice: a POST that went out on a keep-alive connection the server had just
      // closed fails (EPIPE) and is not retried by fetch itself.
      for (const base of this._urls.flatMap((u) => [u, u])) {
        try {
          const response = await fetch(`${base}/sdk/v1/events`, {
            method: 'POST',
            headers: { Authorization: this._authorization, 'Content-Type': 'application/json', 'User-Agent': USER_AGENT },
            body,
            signal: AbortSignal.timeout(Math.max(1, timeoutMs)),
          });
          await response.body?.cancel();
          if (response.ok || (response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429)) {
            if (!response.ok) this._log.warn(`flagstaff: the server refused evaluation counts: HTTP ${response.status}`);
            return true;
          }
        } catch {
          // Try the next server.
        }
      }
      // No server took them: back into the table, for the next send.
      for (const [key, n] of sent) {
        if (this._pending.has(key)) this._pending.set(key, this._pending.get(key) + n);
        else if (this._pending.size < MAX_EVENT_ENTRIES) this._pending.set(key, n);
        else this._dropped += n;
      }
      this._pendingStart = start;
      return false;
    })().finally(() => {
      this._sending = null;
    });
    return this._sending;
  }
}

module.exports = { Flagstaff, keyFingerprint };

// The OpenFeature provider needs @openfeature/server-sdk (a peer dependency): loaded on first use.
Object.defineProperty(module.exports, 'FlagstaffProvider', {
  enumerable: true,
  get: () => require('./provider.js').FlagstaffProvider,
});
