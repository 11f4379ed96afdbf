// Flagstaff browser SDK: flag values evaluated on the server for a context; rules never reach
// the browser. An ES module without dependencies, served by Flagstaff at /sdk/flagstaff.js.
//
//   import * as flags from 'https://flags.example.com/sdk/flagstaff.js';
//   await flags.init({url: 'https://flags.example.com', key: 'fs_cli_…', context: {targetingKey: 'user-1'}});
//   if (flags.isEnabled('new-checkout')) { … }
//   flags.on('change', (keys) => render());
//
// Reads go first to the cacheable GET /client/v1/{key}/{context} (a CDN may answer it, even
// while Flagstaff is down), then, when it fails or does not answer within `beltTimeout` ms
// (default 1.5 s), to the OFREP bulk POST. Changes arrive over Server-Sent Events; when the
// stream cannot be held (no EventSource, or 3 failures within a minute: a proxy that blocks or
// keeps closing it) the SDK polls every `pollInterval` ms (default 30 s) instead. The last values per context are kept in localStorage: they are used at once on the
// next start, and when the server cannot be reached. Without an answer within `timeout` ms
// (default 10 s) init() resolves anyway: isEnabled() is then false and get() undefined.

const STORAGE_PREFIX = 'flagstaff:';
const CONTEXTS_KEPT = 5;
const LONGEST_GET_URL = 4000;

// JSON with sorted keys: equal contexts give one URL (so caches share it) and one cache entry.
const canonical = (v) =>
  Array.isArray(v)
    ? '[' + v.map((x) => (x === undefined ? 'null' : canonical(x))).join(',') + ']'
    : v && typeof v == 'object'
      ? '{' + Object.keys(v).sort().filter((k) => v[k] !== undefined)
          .map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}'
      : JSON.stringify(v) ?? 'null';

const base64url = (text) => {
  let bin = '';
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
};

const fnv = (text) => {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(36);
};

const same = (a, b) => canonical(a) === canonical(b);

/** A client of one Flagstaff environment. Most pages use the module's functions instead. */
export function createClient({
  url, key, context = {}, timeout = 10000, stream = true, beltTimeout = 1500, pollInterval = 30000,
} = {}) {
  if (!url || !key) throw new TypeError('flagstaff: init({url, key}) needs the server URL and a client key');
  const base = String(url).replace(/\/+$/, '');
  const storageKey = STORAGE_PREFIX + base + '|' + key;
  const listeners = {};
  let values = {};
  let ctx;
  let ctxJson;
  let revision = 0; // the environment's revision our values reflect, when known
  let generation = 0; // a newer identify() wins over an older answer still in flight
  let source;
  let poller;
  let failures = [];
  let closed = false;

  const emit = (type, detail) => {
    for (const fn of (listeners[type] || []).slice()) {
      try {
        fn(detail);
      } catch (e) {
        setTimeout(() => { throw e; });
      }
    }
  };

  // localStorage may be missing or refuse (private windows, quotas): then nothing is kept.
  const readStore = () => {
    try {
      return JSON.parse(localStorage.getItem(storageKey)) || {};
    } catch {
      return {};
    }
  };
  const writeStore = () => {
    try {
      const all = readStore();
      all[fnv(ctxJson)] = { v: values, r: revision, t: Date.now() };
      const ids = Object.keys(all).sort((a, b) => all[b].t - all[a].t);
      for (const id of ids.slice(CONTEXTS_KEPT)) delete all[id];
      localStorage.setItem(storageKey, JSON.stringify(all));
    } catch {
      // not kept; the values in memory are still right
    }
  };

  const apply = (next, nextRevision) => {
    const changed = Object.keys({ ...values, ...next }).filter((k) => !same(values[k], next[k]));
    values = next;
    if (nextRevision > revision) revision = nextRevision;
    writeStore();
    if (changed.length) emit('change', changed);
  };

  const setContext = (context) => {
    ctx = context && typeof context == 'object' ? context : {};
    ctxJson = canonical(ctx);
    const kept = readStore()[fnv(ctxJson)];
    if (kept) {
      const changed = Object.keys({ ...values, ...kept.v }).filter((k) => !same(values[k], kept.v[k]));
      values = kept.v;
      revision = kept.r || 0;
      if (changed.length) emit('change', changed);
    }
  };

  async function fetchValues(signal, target) {
    // The belt: a plain GET, no preflight, cacheable by browsers and CDNs. After a change,
    // `?r=` makes it a URL no cache has seen.
    const encoded = base64url(ctxJson);
    if (encoded.length <= LONGEST_GET_URL) {
      // Its own budget: a belt that hangs must leave time for the suspenders.
      const belt = new AbortController();
      const stop = () => belt.abort();
      signal.addEventListener('abort', stop);
      const timer = setTimeout(stop, Math.min(beltTimeout, timeout));
      try {
        const res = await fetch(
          base + '/client/v1/' + encodeURIComponent(key) + '/' + encoded + (target ? '?r=' + target : ''),
          { signal: belt.signal },
        );
        if (res.ok) {
          const body = await res.json();
          return [body.flags || {}, body.revision || 0];
        }
      } catch (e) {
        if (signal.aborted) throw e;
      } finally {
        clearTimeout(timer);
        signal.removeEventListener('abort', stop);
      }
    }
    // The suspenders: OFREP's bulk evaluation.
    const res = await fetch(base + '/ofrep/v1/evaluate/flags', {
      method: 'POST',
      signal,
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + key },
      body: JSON.stringify({ context: ctx }),
    });
    if (!res.ok) throw new Error('flagstaff: evaluation failed with HTTP ' + res.status);
    const out = {};
    for (const f of (await res.json()).flags || []) if ('value' in f && !f.errorCode) out[f.key] = f.value;
    return [out, 0];
  }

  /** Fetches the values for the current context (as of revision `target`, if known); resolves to whether it got them. */
  async function refresh(target = revision) {
    const mine = ++generation;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeout);
    try {
      const [next, nextRevision] = await fetchValues(abort.signal, target);
      if (mine === generation && !closed) apply(next, nextRevision || target);
      return true;
    } catch (e) {
      if (mine === generation) emit('error', e);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  const poll = () => {
    if (!poller && !closed && pollInterval > 0) poller = setInterval(() => refresh(), pollInterval);
  };

  const listen = () => {
    if (!stream) return;
    if (typeof EventSource == 'undefined') return poll();
    source = new EventSource(base + '/ofrep/v1/stream?key=' + encodeURIComponent(key));
    source.onerror = () => {
      const now = Date.now();
      failures = failures.filter((t) => now - t < 60000).concat(now);
      if (failures.length >= 3 || source.readyState === 2) {
        source.close();
        poll();
      }
    };
    source.onmessage = (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      const id = Number(event.lastEventId) || 0;
      // Each event names the environment's revision: nothing to do if our values are as new.
      if (data.type === 'refetchEvaluation' && !(id && id <= revision)) refresh(id);
    };
  };

  setContext(context);
  const ready = refresh().then((ok) => {
    listen();
    emit('ready', ok);
    return ok;
  });

  return {
    /** Resolves (to whether fresh values arrived) once the first answer came or `timeout` passed. */
    ready,
    /** True only when the flag's value is `true`; false for an unknown flag. */
    isEnabled: (flag) => values[flag] === true,
    /** The flag's value; undefined for an unknown flag. */
    get: (flag) => values[flag],
    /** Every value, by flag key. */
    all: () => ({ ...values }),
    /** Switches to another context (e.g. after login); resolves like `ready`. */
    identify(context) {
      setContext(context);
      return refresh();
    },
    /** Calls `fn` on 'change' (with the changed keys), 'ready' or 'error'; returns an unsubscribe function. */
    on(type, fn) {
      (listeners[type] = listeners[type] || []).push(fn);
      return () => (listeners[type] = listeners[type].filter((f) => f !== fn));
    },
    /** Stops listening for changes. */
    close() {
      closed = true;
      if (source) source.close();
      clearInterval(poller);
    },
  };
}

let client;
const current = () => {
  if (!client) throw new Error('flagstaff: call init() first');
  return client;
};

/** Starts the SDK: `init({url, key, context, timeout, beltTimeout, pollInterval})`. Resolves like `ready`; never rejects on network trouble. */
export function init(options) {
  if (client) client.close();
  client = createClient(options);
  return client.ready;
}
export const isEnabled = (flag) => (client ? client.isEnabled(flag) : false);
export const get = (flag) => (client ? client.get(flag) : undefined);
export const all = () => (client ? client.all() : {});
export const identify = (context) => current().identify(context);
export const on = (type, fn) => current().on(type, fn);
export const close = () => client && client.close();
