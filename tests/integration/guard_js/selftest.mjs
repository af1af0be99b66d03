// Checks plugins/guard/client.js against an independent implementation of tessera's guard
// protocol, with no tessera running: node:crypto for ECDH, HKDF, SHA-256 and AES-256-GCM, and
// http-message-signatures (RFC 9421) for signing and verifying.
//
// 1. A fixed request through client.js's pieces: the digest, the signature parameters and base,
//    and the HMAC must match what node:crypto and the library compute; a reply sealed with
//    node:crypto must open, and a tampered one must not.
// 2. GuardClient end to end against a fake tessera behind globalThis.fetch: time sync, key
//    agreement, sealed replies, the unknown_key retry (once, shared by concurrent calls), key
//    expiry, and a missing session cookie.
//
//   NODE_PATH=DIR/node_modules node selftest.mjs      (DIR as given to setup.sh)
// Prints {"ok":true}; a failed check goes to stderr with exit status 1.

import assert from 'node:assert/strict';
import nodeCrypto from 'node:crypto';
import fs from 'node:fs';
import {createRequire} from 'node:module';
import os from 'node:os';
import path from 'node:path';
import {pathToFileURL} from 'node:url';

const require = createRequire(import.meta.url);
const {httpbis, createSigner, createVerifier} = require('http-message-signatures');

globalThis.crypto ??= nodeCrypto.webcrypto;

// client.js is an ES module with no package.json beside it, which Node before 20.19 would load as
// CommonJS: import a copy named .mjs.
async function importClient() {
  const source = new URL('../../../plugins/guard/client.js', import.meta.url);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-guard-'));
  try {
    fs.copyFileSync(source, path.join(dir, 'client.mjs'));
    return await import(pathToFileURL(path.join(dir, 'client.mjs')).href);
  } finally {
    fs.rmSync(dir, {recursive: true, force: true});
  }
}
const {GuardClient, _internals} = await importClient();

const kSealedType = 'application/tessera-sealed';
const kSignatureInput = new RegExp('^sig1=\\("@method" "@target-uri" "content-digest"\\)' +
    ';created=(\\d+);keyid="([^"]+)";nonce="([A-Za-z0-9_-]{22})";alg="hmac-sha256"$');
const refuse = (reason) => new Response('', {status: 401, headers: {'X-Tessera-Guard': reason}});
const sha256 = (data) => nodeCrypto.createHash('sha256').update(data).digest();

function deriveK(z, sessionValue) {
  const salt = sha256(Buffer.from(sessionValue, 'utf8'));
  return Buffer.from(nodeCrypto.hkdfSync('sha256', z, salt, 'tessera guard v1', 32));
}

function seal(k, keyid, contentType, body) {
  const iv = nodeCrypto.randomBytes(12);
  const cipher = nodeCrypto.createCipheriv('aes-256-gcm', k, iv);
  cipher.setAAD(Buffer.from(keyid, 'utf8'));
  const plain = Buffer.concat([Buffer.from(`${contentType}\r\n`, 'utf8'), Buffer.from(body)]);
  return Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
}

function verify(k, keyid, request) {
  return httpbis.verifyMessage({
    keyLookup: async (params) => (params.keyid === keyid ?
        {id: keyid, algs: ['hmac-sha256'], verify: createVerifier(k, 'hmac-sha256')} : null),
    requiredParams: ['created', 'keyid', 'nonce', 'alg'],
    requiredFields: ['@method', '@target-uri', 'content-digest'],
    tolerance: 600,
  }, request);
}

async function fixedRequest() {
  const server = nodeCrypto.generateKeyPairSync('ec', {namedCurve: 'P-256'});
  const client = nodeCrypto.generateKeyPairSync('ec', {namedCurve: 'P-256'});
  const z = nodeCrypto.diffieHellman({privateKey: client.privateKey, publicKey: server.publicKey});
  assert.equal(z.length, 32);
  const sessionValue = 'sess-%E2%9C%93.42';
  const k = deriveK(z, sessionValue);
  const keys = await _internals.deriveKeys(z, sessionValue);

  const uri = 'https://shop.example:8443/api/orders?ref=7';
  const body = new TextEncoder().encode('{"item":"ticket-42","qty":2}');
  const digest = await _internals.contentDigest(body);
  assert.equal(digest, `sha-256=:${sha256(body).toString('base64')}:`);
  const empty = await _internals.contentDigest(new Uint8Array(0));
  assert.equal(empty, 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');

  const fixed = {created: 1700000000, keyid: 'k-1', nonce: 'bm9uY2Utbm9uY2Utbg'};
  const params = _internals.signatureParams(fixed);
  assert.equal(params, '("@method" "@target-uri" "content-digest");created=1700000000;' +
                       'keyid="k-1";nonce="bm9uY2Utbm9uY2Utbg";alg="hmac-sha256"');
  const base = _internals.signatureBase('POST', uri, digest, params);
  assert.equal(base, `"@method": POST\n"@target-uri": ${uri}\n"content-digest": ${digest}\n` +
                     `"@signature-params": ${params}`);
  const signature = await _internals.sign(keys.hmac, base);
  assert.equal(signature, nodeCrypto.createHmac('sha256', k).update(base).digest('base64'));

  // The library signs the same request to the same headers, and verifies client.js's.
  const signed = await httpbis.signMessage({
    key: createSigner(k, 'hmac-sha256', fixed.keyid),
    name: 'sig1',
    fields: ['@method', '@target-uri', 'content-digest'],
    params: ['created', 'keyid', 'nonce', 'alg'],
    paramValues: {created: new Date(fixed.created * 1000), nonce: fixed.nonce, alg: 'hmac-sha256'},
  }, {method: 'POST', url: uri, headers: {'content-digest': digest}});
  assert.equal(signed.headers['Signature-Input'], `sig1=${params}`);
  assert.equal(signed.headers.Signature, `sig1=:${signature}:`);
  const request = {method: 'POST', url: uri, headers: {
    'content-digest': digest,
    'signature-input': `sig1=${params}`,
    'signature': `sig1=:${signature}:`,
  }};
  assert.equal(await verify(k, fixed.keyid, request), true);
  assert.equal(await verify(k, fixed.keyid, {...request, url: `${uri}8`}), false);
  assert.equal(await verify(k, fixed.keyid,
                            {...request, headers: {...request.headers, 'content-digest': empty}}),
               false);

  const sealed = seal(k, 'k-1', 'application/json; charset=utf-8', '{"ok":true}');
  const opened = await _internals.unseal(keys.aes, 'k-1', sealed);
  assert.equal(opened.contentType, 'application/json; charset=utf-8');
  assert.equal(new TextDecoder().decode(opened.body), '{"ok":true}');
  await assert.rejects(_internals.unseal(keys.aes, 'k-2', sealed), /does not open/);
  sealed[20] ^= 1;
  await assert.rejects(_internals.unseal(keys.aes, 'k-1', sealed), /does not open/);

  const headers = new Headers();
  const bytes = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
  assert.deepEqual([..._internals.encodeBody(bytes, headers)], [1, 2, 3]);
  assert.equal(headers.get('Content-Type'), null);
  assert.equal(new TextDecoder().decode(_internals.encodeBody({a: [1, 'é']}, headers)),
               '{"a":[1,"é"]}');
  assert.equal(headers.get('Content-Type'), 'application/json');
  assert.throws(() => _internals.encodeBody(new Map(), new Headers()), TypeError);

  globalThis.document = {cookie: 'theme=dark; SESSIONID=v%3D1=x; other=2'};
  assert.equal(_internals.readCookie('SESSIONID'), 'v%3D1=x');
  assert.equal(_internals.readCookie('SESSION'), null);
  delete globalThis.document;
}

// tessera's side of the protocol, as the guard plugin is specified, behind globalThis.fetch.
class FakeTessera {
  skewMs = 5000;
  expiresIn = 600;
  agreements = 0;
  keys = new Map();  // keyid -> K
  nonces = new Set();
  hits = new Map();  // path -> count
  lastUri = null;
  #pair = nodeCrypto.generateKeyPairSync('ec', {namedCurve: 'P-256'});

  async handle(input, init = {}) {
    const url = new URL(input);
    this.hits.set(url.pathname, (this.hits.get(url.pathname) ?? 0) + 1);
    const headers = new Headers(init.headers);
    const body = Buffer.from(init.body ?? []);
    switch (url.pathname) {
      case '/_tessera/time': return Response.json({now: Date.now() + this.skewMs});
      case '/_tessera/keys': return this.#agree(headers, body);
      case '/api/stale': return refuse('stale');
      default: return this.#signed(init.method ?? 'GET', url, headers, body);
    }
  }

  #agree(headers, body) {
    assert.equal(headers.get('Content-Type'), 'application/json');
    const {jwk} = JSON.parse(body);
    assert.deepEqual(Object.keys(jwk).sort(), ['crv', 'kty', 'x', 'y']);
    const session = /(?:^|;\s*)SESSIONID=([^;]*)/.exec(headers.get('Cookie') ?? '');
    if (!session) return refuse('no_session');
    const z = nodeCrypto.diffieHellman({
      privateKey: this.#pair.privateKey,
      publicKey: nodeCrypto.createPublicKey({key: jwk, format: 'jwk'})});
    const keyid = `k${++this.agreements}`;
    this.keys.set(keyid, deriveK(z, session[1]));
    const {kty, crv, x, y} = this.#pair.publicKey.export({format: 'jwk'});
    return Response.json(
        {jwk: {kty, crv, x, y}, keyid, expires_in: this.expiresIn, cookie: 'SESSIONID'});
  }

  async #signed(method, url, headers, body) {
    const input = headers.get('Signature-Input') ?? '';
    const m = kSignatureInput.exec(input);
    assert.ok(m, `Signature-Input: ${input}`);
    assert.equal(headers.get('Content-Digest'), `sha-256=:${sha256(body).toString('base64')}:`);
    assert.ok(Math.abs(Number(m[1]) - (Date.now() + this.skewMs) / 1000) < 2, 'created');
    assert.ok(!this.nonces.has(m[3]), 'nonce reused');
    this.nonces.add(m[3]);
    const k = this.keys.get(m[2]);
    if (!k) return refuse('unknown_key');
    this.lastUri = url.href;
    const ok = await verify(k, m[2], {method, url: url.href, headers: Object.fromEntries(headers)});
    if (!ok) return refuse('bad_signature');
    if (url.pathname === '/api/plain') return Response.json({plain: true});
    const reply = JSON.stringify({method, got: body.toString('utf8')});
    const sealed = seal(k, m[2], 'application/json; charset=utf-8', reply);
    return new Response(sealed, {status: 201, statusText: 'Created', headers: {
      'Content-Type': kSealedType, 'Content-Length': String(sealed.length), 'X-Order': '7'}});
  }
}

async function endToEnd() {
  const tessera = new FakeTessera();
  globalThis.fetch = (input, init) => tessera.handle(input, init);
  const base = 'https://shop.example:8443/app/page.html?x=1#top';
  const cookie = {Cookie: 'theme=dark; SESSIONID=sess-42'};

  globalThis.document = {cookie: 'theme=dark; SESSIONID=sess-42'};
  const guard = new GuardClient();
  const {keyid, offset} = await guard.init({base, headers: cookie});
  assert.equal(keyid, 'k1');
  assert.ok(Math.abs(offset - tessera.skewMs) < 1000, `offset ${offset}`);

  let res = await guard.fetch('/api/orders?ref=a b#frag',
                              {method: 'post', body: {item: 'ticket-42', qty: 2}});
  assert.equal(tessera.lastUri, 'https://shop.example:8443/api/orders?ref=a%20b');
  assert.equal(res.status, 201);
  assert.equal(res.statusText, 'Created');
  assert.equal(res.headers.get('Content-Type'), 'application/json; charset=utf-8');
  assert.equal(res.headers.get('Content-Length'), null);
  assert.equal(res.headers.get('X-Order'), '7');
  assert.deepEqual(await res.json(), {method: 'POST', got: '{"item":"ticket-42","qty":2}'});

  res = await guard.fetch('/api/plain');  // a GET: no body, the digest of nothing
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {plain: true});
  res = await guard.fetch('orders');  // relative to the page
  assert.equal(tessera.lastUri, 'https://shop.example:8443/app/orders');
  assert.deepEqual(await res.json(), {method: 'GET', got: ''});

  // tessera forgot the key: concurrent calls share one new agreement and retry once.
  tessera.keys.clear();
  const both = await Promise.all(
      ['a', 'b'].map((body) => guard.fetch('/api/x', {method: 'PUT', body})));
  assert.deepEqual(both.map((r) => r.status), [201, 201]);
  assert.equal(tessera.agreements, 2);

  // Any other 401 comes back as it is, with no retry.
  res = await guard.fetch('/api/stale', {method: 'POST'});
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('X-Tessera-Guard'), 'stale');
  assert.equal(tessera.hits.get('/api/stale'), 1);
  assert.equal(tessera.agreements, 2);

  // A key about to expire is replaced before it is used.
  tessera.expiresIn = 3;
  const short = new GuardClient();
  assert.equal((await short.init({base, headers: cookie})).keyid, 'k3');
  assert.equal((await short.fetch('/api/y', {method: 'POST', body: 'z'})).status, 201);
  assert.equal(tessera.agreements, 4);
  tessera.expiresIn = 600;

  // The salt is the session cookie's value: from init({sessionValue}) when the page cannot read
  // it, and a wrong one fails the signature.
  delete globalThis.document;
  await assert.rejects(new GuardClient().init({base, headers: cookie}),
                       /session cookie "SESSIONID" is not readable/);
  const explicit = {Cookie: 'SESSIONID=explicit-7'};
  const told = new GuardClient();
  await told.init({base, headers: explicit, sessionValue: 'explicit-7'});
  assert.equal((await told.fetch('/api/z', {method: 'POST', body: 'q'})).status, 201);
  const wrong = new GuardClient();
  await wrong.init({base, headers: explicit, sessionValue: 'explicit-8'});
  res = await wrong.fetch('/api/z', {method: 'POST', body: 'q'});
  assert.equal(res.headers.get('X-Tessera-Guard'), 'bad_signature');

  await assert.rejects(new GuardClient().init({base}), /keys answered 401 \(no_session\)/);
  await assert.rejects(new GuardClient().fetch('/api/z'), /pass init\(\{base\}\)/);
}

async function main() {
  await fixedRequest();
  await endToEnd();
  process.stdout.write(`${JSON.stringify({ok: true})}\n`);
}

main().catch((e) => {
  process.stderr.write(`guard selftest: ${e.stack ?? e}\n`);
  process.exit(1);
});
