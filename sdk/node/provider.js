'use strict';
// FlagstaffProvider: an OpenFeature provider for @openfeature/server-sdk over the Flagstaff
// client: resolutions are local evaluations (variant, reason, error code, flag metadata), and
// the client's events become provider events (READY, CONFIGURATION_CHANGED with the changed
// flag keys, STALE when no server answers, READY again when one does).

const { OpenFeatureEventEmitter, ProviderEvents } = require('@openfeature/server-sdk');

const { Flagstaff } = require('./index.js');

/** OpenFeature's error codes, by the code the client gives. */
const ERROR_CODES = new Set(['FLAG_NOT_FOUND', 'TARGETING_KEY_MISSING', 'TYPE_MISMATCH', 'INVALID_CONTEXT', 'PARSE_ERROR', 'GENERAL']);

class FlagstaffProvider {
  /**
   * `new FlagstaffProvider({url, key, …})` takes the options of `Flagstaff.start` and starts a
   * client when OpenFeature initialises the provider; `new FlagstaffProvider({client})` uses a
   * client already started (and leaves closing it to its owner).
   */
  constructor(options) {
    if (!options || typeof options !== 'object') throw new TypeError('FlagstaffProvider needs options');
    this.metadata = { name: 'flagstaff' };
    this.runsOn = 'server';
    this.events = new OpenFeatureEventEmitter();
    this._options = options;
    this._client = options.client || null;
    this._owned = !options.client;
    this._listeners = [];
  }

  /** The Flagstaff client, once initialised. */
  get client() {
    return this._client;
  }

  async initialize() {
    if (!this._client) this._client = await Flagstaff.start(this._options);
    const on = (event, fn) => {
      this._client.on(event, fn);
      this._listeners.push([event, fn]);
    };
    on('change', (change) =>
      this.events.emit(ProviderEvents.ConfigurationChanged, {
        flagsChanged: change.flags,
        message: `revision ${change.revision} from ${change.source}`,
        metadata: { revision: change.revision },
      }),
    );
    on('disconnected', ({ reason }) => this.events.emit(ProviderEvents.Stale, { message: `no Flagstaff server answers: ${reason}` }));
    on('connected', () => this.events.emit(ProviderEvents.Ready, { message: 'a Flagstaff server answers again' }));
  }

  async onClose() {
    if (!this._client) return;
    for (const [event, fn] of this._listeners) this._client.off(event, fn);
    this._listeners = [];
    if (this._owned) await this._client.close();
  }

  _resolve(flagKey, defaultValue, context, expected) {
    if (!this._client) {
      return { value: defaultValue, reason: 'ERROR', errorCode: 'PROVIDER_NOT_READY', errorMessage: 'the provider is not initialised' };
    }
    const e = this._client._resolve(flagKey, context, expected);
    const flagMetadata = { version: e.version };
    if (e.ruleId) flagMetadata.ruleId = e.ruleId;
    if (e.prerequisite) flagMetadata.prerequisite = e.prerequisite;
    if (e.errorCode) {
      return {
        value: defaultValue,
        reason: 'ERROR',
        errorCode: ERROR_CODES.has(e.errorCode) ? e.errorCode : 'GENERAL',
        errorMessage: e.errorMessage,
        flagMetadata,
      };
    }
    return { value: e.value, variant: e.variant, reason: e.reason, flagMetadata };
  }

  async resolveBooleanEvaluation(flagKey, defaultValue, context) {
    return this._resolve(flagKey, defaultValue, context, 'boolean');
  }

  async resolveStringEvaluation(flagKey, defaultValue, context) {
    return this._resolve(flagKey, defaultValue, context, 'string');
  }

  async resolveNumberEvaluation(flagKey, defaultValue, context) {
    return this._resolve(flagKey, defaultValue, context, 'number');
  }

  async resolveObjectEvaluation(flagKey, defaultValue, context) {
    return this._resolve(flagKey, defaultValue, context, 'object');
  }
}

module.exports = { FlagstaffProvider };
