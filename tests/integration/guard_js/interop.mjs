// An independent guard client for tessera's integration tests: it shares no code with
// plugins/guard/client.js. Node's webcrypto does the time sync and key agreement, node:crypto
// derives K, and http-message-signatures (RFC 9421) signs. It prints the headers for a
// POST {base}{path} and does not send it: the test sends, replays and tampers with it itself.
//
//   NODE_PATH=DIR/node_modules node interop.mjs --base https://127.0.0.1:PORT
//       --cookie NAME=VALUE --path /api/orders --body TEXT
//       [--created-offset SECONDS] [--prefix /_tessera/]
// (DIR as given to setup.sh; tessera's CA comes in through NODE_EXTRA_CA_CERTS.)
//
// Prints one line: {"keyid", "key_b64": K in base64, "url",
//                   "headers": {"content-digest", "signature-input", "signature"}}.
// Errors go to stderr with exit status 1.

import nodeCrypto from 'node:crypto';
import {createRequire} from 'node:module';

const require = createRequire(import.meta.url);
const {httpbis, createSigner} = require('http-message-signatures');
const {subtle} = nodeCrypto.webcrypto;

// --name VALUE or --name=VALUE. Not util.parseArgs: a value may start with a dash
// (--created-offset -3600, --body -x).
function options(argv) {
  const values = {'body': '', 'created-offset': '0', 'prefix': '/_tessera/'};
  const names = ['base', 'cookie', 'path', ...Object.keys(values)];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(argv[i]);
    if (!m || !names.includes(m[1])) throw new Error(`unknown argument: ${argv[i]}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${m[1]} needs a value`);
    values[m[1]] = value;
  }
  for (const name of ['base', 'cookie', 'path']) {
    if (values[name] === undefined) throw new Error(`--${name} is required`);
  }
  const eq = values.cookie.indexOf('=');
  if (eq <= 0) throw new Error('--cookie must be NAME=VALUE');
  const createdOffset = Number(values['created-offset']);
  if (!Number.isInteger(createdOffset)) throw new Error('--created-offset must be whole seconds');
  return {...values, createdOffset,
          cookieName: values.cookie.slice(0, eq), cookieValue: values.cookie.slice(eq + 1)};
}

async function expectOk(res, what) {
  if (res.ok) return res.json();
  const reason = res.headers.get('x-tessera-guard');
  const why = reason ? ` (${reason})` : '';
  throw new Error(`${what}: HTTP ${res.status}${why}: ${await res.text()}`);
}

async function clockOffset(opts) {
  const t0 = Date.now();
  const {now} = await expectOk(await fetch(new URL(`${opts.prefix}time`, opts.base)), 'time');
  const t1 = Date.now();
  if (typeof now !== 'number') throw new Error('time: no "now" in the reply');
  return now - (t0 + t1) / 2;
}

// ECDH with tessera, then K = HKDF-SHA256(Z, SHA-256(cookie value), "tessera guard v1").
async function agree(opts) {
  const ecdh = {name: 'ECDH', namedCurve: 'P-256'};
  const pair = await subtle.generateKey(ecdh, true, ['deriveBits']);
  const {kty, crv, x, y} = await subtle.exportKey('jwk', pair.publicKey);
  const res = await fetch(new URL(`${opts.prefix}keys`, opts.base), {
    method: 'POST',
    headers: {'content-type': 'application/json', 'cookie': opts.cookie},
    body: JSON.stringify({jwk: {kty, crv, x, y}}),
  });
  const reply = await expectOk(res, 'keys');
  if (reply.cookie !== opts.cookieName) {
    throw new Error(`keys: tessera keys sessions by cookie "${reply.cookie}", ` +
                    `not "${opts.cookieName}"`);
  }
  const peer = await subtle.importKey(
      'jwk', {kty: 'EC', crv: 'P-256', x: reply.jwk.x, y: reply.jwk.y}, ecdh, false, []);
  const z = Buffer.from(
      await subtle.deriveBits({name: 'ECDH', public: peer}, pair.privateKey, 256));
  const salt = nodeCrypto.createHash('sha256').update(opts.cookieValue, 'utf8').digest();
  const k = Buffer.from(nodeCrypto.hkdfSync('sha256', z, salt, 'tessera guard v1', 32));
  return {keyid: reply.keyid, k};
}

async function main() {
  const opts = options(process.argv.slice(2));
  const offset = await clockOffset(opts);
  const {keyid, k} = await agree(opts);
  const url = new URL(opts.path, opts.base).href;
  const digest = `sha-256=:${nodeCrypto.createHash('sha256').update(opts.body, 'utf8')
      .digest('base64')}:`;
  const created = Math.floor((Date.now() + offset) / 1000) + opts.createdOffset;
  const signed = await httpbis.signMessage({
    key: createSigner(k, 'hmac-sha256', keyid),
    name: 'sig1',
    fields: ['@method', '@target-uri', 'content-digest'],
    params: ['created', 'keyid', 'nonce', 'alg'],
    paramValues: {
      created: new Date(created * 1000),
      nonce: nodeCrypto.randomBytes(16).toString('base64url'),
      alg: 'hmac-sha256',
    },
  }, {method: 'POST', url, headers: {'content-digest': digest}});
  const headers = Object.fromEntries(
      Object.entries(signed.headers).map(([name, value]) => [name.toLowerCase(), value]));
  // The guard plugin takes exactly this order of components and parameters.
  const expected = `sig1=("@method" "@target-uri" "content-digest");created=${created};keyid=`;
  if (!headers['signature-input'].startsWith(expected)) {
    throw new Error(`unexpected Signature-Input from the library: ${headers['signature-input']}`);
  }
  process.stdout.write(`${JSON.stringify({keyid, key_b64: k.toString('base64'), headers, url})}\n`);
}

main().catch((e) => {
  process.stderr.write(`guard interop: ${e.message}${e.cause ? `: ${e.cause.message}` : ''}\n`);
  process.exit(1);
});
