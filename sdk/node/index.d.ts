// Types of @flagstaff/node (hand-written; the implementation is index.js over the native addon).

import { EventEmitter } from 'node:events';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A context: `targetingKey` identifies the subject; other attributes are any JSON (dotted names read nested objects). */
export interface Context {
  targetingKey?: string;
  [attribute: string]: unknown;
}

export interface StartOptions {
  /** The Flagstaff server, e.g. `https://flags.example.com`. */
  url: string;
  /** A server key of the environment to read (`fs_srv_…`). */
  key: string;
  /** Servers tried after `url`, in order, at start and whenever the others fail. */
  fallbackUrls?: string[];
  /** Where the last configuration is kept (replaced atomically); the start-up source when no server answers. */
  cacheFile?: string | null;
  /** How long `start` may spend on servers before it falls back to the cache file (default 5000). */
  timeoutMs?: number;
  /** Polling period: the safety net while the stream is up, the way changes arrive while it is down (default 60000). */
  pollIntervalMs?: number;
  /** Time limit of each background request (default 10000). */
  requestTimeoutMs?: number;
  /** Whether to follow the change stream (default true). */
  stream?: boolean;
  /** A base URL for the stream alone (default: `url`, then the fallbacks). */
  streamUrl?: string | null;
  /** A connected stream silent this long is reconnected (default 45000). */
  streamIdleTimeoutMs?: number;
  /** Stream reconnection: exponential from this (default 1000, or the server's `retry:`)… */
  reconnectInitialMs?: number;
  /** …up to this (default 30000), with jitter. */
  reconnectMaxMs?: number;
  /** Whether to send evaluation counts (default true). */
  sendEvents?: boolean;
  /** How often counts are sent (default 60000; also at `close()`). */
  eventsIntervalMs?: number;
  /** Where warnings go (default: nowhere). */
  logger?: { warn(message: string): void; info?(message: string): void; debug?(message: string): void } | null;
}

export type Reason = 'STATIC' | 'DEFAULT' | 'TARGETING_MATCH' | 'SPLIT' | 'DISABLED' | 'PREREQUISITE_FAILED' | 'ERROR';
export type ErrorCode = 'FLAG_NOT_FOUND' | 'TARGETING_KEY_MISSING' | 'TYPE_MISMATCH' | 'INVALID_CONTEXT' | 'GENERAL';

export interface Evaluation {
  key: string;
  /** The served value; null on error. */
  value: JsonValue;
  /** The served variation's key; null on error. */
  variant: string | null;
  reason: Reason;
  errorCode: ErrorCode | null;
  errorMessage?: string;
  /** The matched rule's id, when a rule with an id served the value. */
  ruleId: string | null;
  /** The prerequisite that failed, with reason PREREQUISITE_FAILED. */
  prerequisite: string | null;
  /** The version of the flag's state; 0 when unknown. */
  version: number;
}

export interface ConfigChange {
  revision: number;
  /** Keys of the flags added, changed or removed, sorted. */
  flags: string[];
  /** `server <url>` or `cache file <path>`. */
  source: string;
}

export interface Status {
  project: string;
  environment: string;
  revision: number;
  etag: string | null;
  source: string;
  flags: number;
  streamConnected: boolean;
  connected: boolean;
}

/** A context prepared by `client.context(…)`: reads skip converting it. */
export interface PreparedContext {
  readonly __brand: 'FlagstaffPreparedContext';
}

type AnyContext = Context | PreparedContext | undefined | null;

export declare class Flagstaff extends EventEmitter {
  /** Loads the configuration from the first source that answers (url, fallbacks, cache file); rejects naming each source's answer when none does. */
  static start(options: StartOptions): Promise<Flagstaff>;
  boolValue(key: string, context: AnyContext, defaultValue: boolean): boolean;
  stringValue(key: string, context: AnyContext, defaultValue: string): string;
  numberValue(key: string, context: AnyContext, defaultValue: number): number;
  jsonValue<T = JsonValue>(key: string, context: AnyContext, defaultValue: T): T | JsonValue;
  evaluate(key: string, context: AnyContext): Evaluation;
  allFlags(context: AnyContext): Record<string, Evaluation>;
  /** Prepares a context for many reads (later changes to the object are not seen); throws unless it is a JSON object. */
  context(context: Context): PreparedContext;
  flagKeys(): string[];
  status(): Status;
  close(): Promise<void>;
  on(event: 'change', listener: (change: ConfigChange) => void): this;
  on(event: 'connected', listener: () => void): this;
  on(event: 'disconnected', listener: (info: { reason: string }) => void): this;
  on(event: string | symbol, listener: (...args: any[]) => void): this;
}

/** A fingerprint of a server key (what a cache file records instead of the key). */
export declare function keyFingerprint(key: string): string;

/** An OpenFeature provider for `@openfeature/server-sdk` (needs that package). */
export declare class FlagstaffProvider {
  constructor(options: StartOptions | { client: Flagstaff });
  readonly metadata: { name: 'flagstaff' };
  readonly runsOn: 'server';
  readonly client: Flagstaff | null;
  readonly events: any;
  initialize(): Promise<void>;
  onClose(): Promise<void>;
  resolveBooleanEvaluation(flagKey: string, defaultValue: boolean, context: Context): Promise<any>;
  resolveStringEvaluation(flagKey: string, defaultValue: string, context: Context): Promise<any>;
  resolveNumberEvaluation(flagKey: string, defaultValue: number, context: Context): Promise<any>;
  resolveObjectEvaluation<T>(flagKey: string, defaultValue: T, context: Context): Promise<any>;
}
