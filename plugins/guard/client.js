// tessera guard client: signs a page's requests and opens sealed replies for tessera's guard
// plugin. tessera serves this file at GET {prefix}client.js. A plain ES module on WebCrypto alone:
// browsers (secure contexts) and Node 18+ (on Node 18, set globalThis.crypto to
// node:crypto's webcrypto before use, and pass `base`).
//
// The protocol, every endpoint under a prefix (default /_tessera/) on the page's origin:
// 1. GET {prefix}time -> {"now": ms}. offset = now - (t0 + t1) / 2, t0 and t1 read around the call.
// 2. POST {prefix}keys {"jwk": the client's ephemeral P-256 public JWK}, with the session cookie
//    -> {"jwk": tessera's P-256 public JWK, "keyid", "expires_in": s, "cookie": cookie name}.
//    Z = the ECDH shared secret (x coordinate, 32 bytes); salt = SHA-256(session cookie value);
//    K = HKDF-SHA256(Z, salt, info "tessera guard v1"), 32 bytes.
// 3. Every request is signed (RFC 9421) with HMAC-SHA256 under K over "@method", "@target-uri"
//    (absolute URL, no fragment) and Content-Digest (RFC 9530, sha-256 of the exact body bytes):
//      Content-Digest: sha-256=:<base64>:
//      Signature-Input: sig1=("@method" "@target-uri" "content-digest");created=<s>;
//                       keyid="<keyid>";nonce="<16 random bytes, base64url>";alg="hmac-sha256"
//      Signature: sig1=:<base64>:
//    created is in tessera's clock: floor((Date.now() + offset) / 1000).
// 4. A reply of type application/tessera-sealed is IV (12 bytes) || AES-256-GCM(K, content type
//    || "\r\n" || body) with the keyid as additional data; fetch() hands back the opened Response.
// 5. A 401 names its reason in X-Tessera-Guard. Only "unknown_key" makes fetch() agree on a new
//    key and retry, once; any other reply is returned as it is.
//
//   import {Guard} from '/_tessera/client.js';
//   await Guard.init();
//   const res = await Guard.fetch('/api/orders', {method: 'POST', body: {item: 'ticket-42'}});

const kInfo = 'tessera guard v1';
const kSealedType = 'application/tessera-sealed';
const kNullBodyStatus = [101, 204, 205, 304];
const kRenewEarlyMs = 5000;

const utf8 = (text) => new TextEncoder().encode(text);
const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const b64url = (bytes) => b64(bytes).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const sfString = (text) => `"${String(text).replace(/[\\"]/g, '\\$&')}"`;

function subtle() {
  const s = globalThis.crypto?.subtle;
  if (!s) throw new Error('tessera guard: WebCrypto is unavailable (the page must be https)');
  return s;
}

// The cookie's value exactly as set: the salt is its bytes, so nothing is decoded.
function readCookie(name) {
  for (const pair of (globalThis.document?.cookie ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1).trim();
  }
  return null;
}

// K from the ECDH secret Z, as the HMAC key for signing and the AES-GCM key for opening replies.
// Neither can be exported.
async function deriveKeys(z, sessionValue) {
  const salt = await subtle().digest('SHA-256', utf8(sessionValue));
  const ikm = await subtle().importKey('raw', z, 'HKDF', false, ['deriveBits']);
  const k = await subtle().deriveBits(
      {name: 'HKDF', hash: 'SHA-256', salt, info: utf8(kInfo)}, ikm, 256);
  const hmac = await subtle().importKey(
      'raw', k, {name: 'HMAC', hash: 'SHA-256'}, false, ['sign']);
  const aes = await subtle().importKey('raw', k, 'AES-GCM', false, ['decrypt']);
  return {hmac, aes};
}

// The exact bytes to send. Like fetch(), a string is text/plain unless the caller says otherwise;
// a plain object or array becomes JSON.
function encodeBody(body, headers) {
  if (body == null) return new Uint8Array(0);
  if (typeof body === 'string') {
    if (!headers.has('Content-Type')) headers.set('Content-Type', 'text/plain;charset=UTF-8');
    return utf8(body);
  }
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) {
    return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  }
  const proto = Object.getPrototypeOf(body);
  if (Array.isArray(body) || proto === Object.prototype || proto === null) {
    if (!headers.has('Content-Type')) headers.set('Content-Type', 'application/json');
    return utf8(JSON.stringify(body));
  }
  throw new TypeError('tessera guard: body must be a string, bytes or a plain object');
}

async function contentDigest(bytes) {
  return `sha-256=:${b64(await subtle().digest('SHA-256', bytes))}:`;
}

function signatureParams({created, keyid, nonce}) {
  return `("@method" "@target-uri" "content-digest");created=${created};keyid=${sfString(keyid)}` +
         `;nonce=${sfString(nonce)};alg="hmac-sha256"`;
}

// RFC 9421 section 2.5.
function signatureBase(method, targetUri, digest, params) {
  return [`"@method": ${method}`, `"@target-uri": ${targetUri}`, `"content-digest": ${digest}`,
          `"@signature-params": ${params}`].join('\n');
}

async function sign(hmacKey, base) {
  return b64(await subtle().sign('HMAC', hmacKey, utf8(base)));
}

// IV || ciphertext || tag -> {contentType, body}.
async function unseal(aesKey, keyid, sealed) {
  const bytes = new Uint8Array(sealed);
  if (bytes.length < 12 + 16) throw new Error('tessera guard: sealed reply is too short');
  const opened = await subtle().decrypt(
      {name: 'AES-GCM', iv: bytes.subarray(0, 12), additionalData: utf8(keyid)}, aesKey,
      bytes.subarray(12)).catch(() => {
    throw new Error('tessera guard: sealed reply does not open under this session\'s key');
  });
  const plain = new Uint8Array(opened);
  const crlf = plain.findIndex((b, i) => b === 13 && plain[i + 1] === 10);
  if (crlf < 0) throw new Error('tessera guard: sealed reply has no content type');
  return {contentType: new TextDecoder().decode(plain.subarray(0, crlf)),
          body: plain.subarray(crlf + 2)};
}

async function open(session, res) {
  const type = (res.headers.get('Content-Type') ?? '').split(';')[0].trim().toLowerCase();
  if (type !== kSealedType) return res;
  const {contentType, body} = await unseal(session.aes, session.keyid, await res.arrayBuffer());
  const headers = new Headers(res.headers);
  headers.set('Content-Type', contentType);
  headers.delete('Content-Length');
  return new Response(kNullBodyStatus.includes(res.status) ? null : body,
                      {status: res.status, statusText: res.statusText, headers});
}

export class GuardClient {
  #options = {prefix: '/_tessera/'};
  #offset = 0;
  #session = null;  // a promise of {keyid, hmac, aes, expiresAt}, shared by concurrent calls

  // Time sync, then key agreement. Options: prefix, base (absolute URL, where there is no
  // `location`), sessionValue (when the session cookie is HttpOnly), headers (added to the
  // guard's own calls, e.g. a Cookie header outside a browser).
  async init(options = {}) {
    this.#options = {...options, prefix: options.prefix ?? '/_tessera/'};
    this.#session = null;
    const t0 = Date.now();
    const res = await this.#call('time', {cache: 'no-store'});
    const t1 = Date.now();
    const {now} = await res.json();
    if (!Number.isFinite(now)) throw new Error('tessera guard: time reply has no "now"');
    this.#offset = Math.round(now - (t0 + t1) / 2);
    const {keyid} = await this.#agree();
    return {keyid, offset: this.#offset};
  }

  async fetch(url, options = {}) {
    if (!this.#session) await this.init(this.#options);
    let pending = this.#session;
    let session = await pending;
    if (Date.now() >= session.expiresAt) session = await (pending = this.#renew(pending));
    let res = await this.#send(session, url, options);
    if (res.status === 401 && res.headers.get('X-Tessera-Guard') === 'unknown_key') {
      await res.body?.cancel();
      session = await this.#renew(pending);
      res = await this.#send(session, url, options);
    }
    return open(session, res);
  }

  #url(path) {
    const base = this.#options.base ?? globalThis.location?.href;
    if (!base) throw new Error('tessera guard: no page location; pass init({base})');
    return new URL(path, base);
  }

  async #call(endpoint, init) {
    const res = await globalThis.fetch(this.#url(this.#options.prefix + endpoint), {
      ...init, credentials: 'same-origin', headers: {...this.#options.headers, ...init.headers}});
    if (!res.ok) {
      const reason = res.headers.get('X-Tessera-Guard');
      throw new Error(`tessera guard: ${endpoint} answered ${res.status}` +
                      (reason ? ` (${reason})` : ''));
    }
    return res;
  }

  // One agreement for all the callers that found the same session stale: `stale` is the promise
  // they awaited, and only the first of them replaces it.
  #renew(stale) {
    return this.#session === stale || !this.#session ? this.#agree() : this.#session;
  }

  #agree() {
    const pending = this.#newSession();
    this.#session = pending;
    pending.catch(() => { if (this.#session === pending) this.#session = null; });
    return pending;
  }

  async #newSession() {
    const ecdh = {name: 'ECDH', namedCurve: 'P-256'};
    const pair = await subtle().generateKey(ecdh, false, ['deriveBits']);
    const {x, y} = await subtle().exportKey('jwk', pair.publicKey);
    const res = await this.#call('keys', {
      method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({jwk: {kty: 'EC', crv: 'P-256', x, y}})});
    const reply = await res.json();
    const sessionValue = this.#options.sessionValue ?? readCookie(reply.cookie);
    if (sessionValue == null) {
      throw new Error(`tessera guard: session cookie "${reply.cookie}" is not readable from ` +
                      'document.cookie (HttpOnly?); pass init({sessionValue})');
    }
    const peer = await subtle().importKey(
        'jwk', {kty: 'EC', crv: 'P-256', x: reply.jwk?.x, y: reply.jwk?.y}, ecdh, false, []);
    const z = await subtle().deriveBits({name: 'ECDH', public: peer}, pair.privateKey, 256);
    const keys = await deriveKeys(z, sessionValue);
    // Renewed a little early, so that a request in flight does not meet an expired key.
    const lifetime = Number(reply.expires_in ?? Infinity) * 1000;
    return {keyid: String(reply.keyid), ...keys, expiresAt: Date.now() + lifetime - kRenewEarlyMs};
  }

  async #send(session, url, options) {
    const target = this.#url(url);
    target.hash = '';
    const method = (options.method ?? 'GET').toUpperCase();
    const headers = new Headers(options.headers);
    const body = encodeBody(options.body, headers);
    const digest = await contentDigest(body);
    const params = signatureParams({
      created: Math.floor((Date.now() + this.#offset) / 1000), keyid: session.keyid,
      nonce: b64url(globalThis.crypto.getRandomValues(new Uint8Array(16)))});
    headers.set('Content-Digest', digest);
    headers.set('Signature-Input', `sig1=${params}`);
    const base = signatureBase(method, target.href, digest, params);
    headers.set('Signature', `sig1=:${await sign(session.hmac, base)}:`);
    return globalThis.fetch(target.href, {
      credentials: 'same-origin', ...options, method, headers,
      body: method === 'GET' || method === 'HEAD' ? undefined : body});
  }
}

export const Guard = new GuardClient();

// For tessera's own tests only; not part of the API.
export const _internals = {
  readCookie, deriveKeys, encodeBody, contentDigest, signatureParams, signatureBase, sign, unseal,
};
