#!/usr/bin/python3
"""An independent JOSE implementation for tessera's interop tests, on Debian's python3-jwcrypto.

It mirrors `tessera token keygen` and `tessera token issue` (same options, same file formats:
a private JWK with mode 0600, a public JWKS {"keys": [...]} with mode 0644), and verifies and
decrypts tokens that tessera minted. Nothing here shares code with tessera's C++ (cjose), so a
token that passes both ways shows the two agree on the wire format, not just with themselves.

Run it with /usr/bin/python3: python3-jwcrypto installs for the Debian interpreter only.

  jwcrypto_mint.py keygen --type ec|rsa --private P --public P [--kid ID]
  jwcrypto_mint.py issue --issuer ISS --audience AUD --sign-key K [--alg ES256|RS256|PS256]
      [--claims JSON] [--sensitive JSON --encrypt-to PUB] [--sensitive-claim pii] [--ttl 300s]
  jwcrypto_mint.py verify TOKEN --keys PUB_JWKS [--decrypt-key K] [--sensitive-claim pii]
      [--issuer ISS] [--audience AUD]
      prints the verified claims as JSON, encrypted claims replaced by their decrypted JSON.

Errors go to stderr with exit status 1.
"""

import argparse
import json
import os
import re
import secrets
import sys
import time

from jwcrypto import jwe, jwk, jws, jwt
from jwcrypto.common import json_encode

SIGNING_ALGS = ["ES256", "RS256", "PS256"]
# What tessera's jwt plugin accepts for encrypted claims; RSA1_5 is refused on purpose.
JWE_ALGS = ["ECDH-ES", "RSA-OAEP", "A256GCM"]
RESERVED = {"iss": "--issuer", "aud": "--audience", "iat": "the clock", "nbf": "the clock",
            "exp": "--ttl"}
CLOCK_SKEW = 60


class Failure(Exception):
    pass


def write_new(path, text, mode):
    # O_EXCL: never overwrite, as tessera does; fchmod so the umask does not decide the mode.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise Failure(f"{what} {path}: {e.strerror}") from None
    except ValueError:
        # json's message quotes the input, which may be a private key.
        raise Failure(f"{what} {path}: not valid JSON") from None


def key_list(path, what):
    data = read_json(path, what)
    objects = data["keys"] if isinstance(data, dict) and "keys" in data else [data]
    if not isinstance(objects, list) or not objects:
        raise Failure(f'{what} {path}: "keys" must be a non-empty array')
    try:
        return [jwk.JWK(**obj) for obj in objects]
    except Exception as e:  # jwcrypto raises several types for a malformed JWK
        raise Failure(f"{what} {path}: not a usable JWK ({type(e).__name__})") from None


def parse_object(text, what):
    try:
        value = json.loads(text)
    except ValueError:
        raise Failure(f"{what}: not valid JSON") from None
    if not isinstance(value, dict):
        raise Failure(f"{what}: must be a JSON object")
    return value


def parse_ttl(text):
    m = re.fullmatch(r"([0-9]+)([smhd]?)", text)
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)] \
        if m else 0
    if not 1 <= seconds <= 400 * 86400:
        raise Failure(f"--ttl {text}: expected a duration from 1s to 400d")
    return seconds


def cmd_keygen(a):
    kid = a.kid or secrets.token_hex(8)
    if a.type == "ec":
        key = jwk.JWK.generate(kty="EC", crv="P-256", kid=kid)
    else:
        key = jwk.JWK.generate(kty="RSA", size=2048, kid=kid)
    for path in (a.private, a.public):
        if os.path.lexists(path):
            raise Failure(f"{path}: exists; refusing to overwrite it")
    write_new(a.private, key.export_private() + "\n", 0o600)
    try:
        public = {"keys": [json.loads(key.export_public())]}
        write_new(a.public, json.dumps(public, indent=2) + "\n", 0o644)
    except BaseException:
        os.unlink(a.private)
        raise
    print(kid)


def encrypt_sensitive(a, claims):
    if a.sensitive_claim in claims or a.sensitive_claim in RESERVED:
        raise Failure(f'--sensitive-claim "{a.sensitive_claim}": already set')
    if not a.encrypt_to:
        raise Failure("--sensitive needs --encrypt-to")
    sensitive = parse_object(a.sensitive, "--sensitive")
    to = key_list(a.encrypt_to, "--encrypt-to")[0]
    header = {"alg": "ECDH-ES" if to["kty"] == "EC" else "RSA-OAEP", "enc": "A256GCM"}
    if to.get("kid"):
        header["kid"] = to["kid"]
    token = jwe.JWE(json.dumps(sensitive).encode(), protected=json_encode(header))
    token.allowed_algs = JWE_ALGS
    token.add_recipient(to)
    claims[a.sensitive_claim] = token.serialize(compact=True)


def cmd_issue(a):
    key = key_list(a.sign_key, "--sign-key")[0]
    if not key.has_private:
        raise Failure(f"--sign-key {a.sign_key}: a public key")
    alg = a.alg or ("ES256" if key["kty"] == "EC" else "RS256")
    if alg not in SIGNING_ALGS:
        raise Failure(f"--alg {alg}: unsupported")
    claims = parse_object(a.claims, "--claims")
    for name, source in RESERVED.items():
        if name in claims:
            raise Failure(f'--claims: "{name}" is set by {source}')
    if a.sensitive:
        encrypt_sensitive(a, claims)
    now = int(time.time())
    claims.update(iss=a.issuer, aud=a.audience[0] if len(a.audience) == 1 else a.audience,
                  iat=now, nbf=now, exp=now + parse_ttl(a.ttl))
    header = {"alg": alg, "typ": "JWT"}
    if key.get("kid"):
        header["kid"] = key["kid"]
    token = jws.JWS(json.dumps(claims).encode())
    token.allowed_algs = SIGNING_ALGS
    token.add_signature(key, alg=None, protected=json_encode(header))
    print(token.serialize(compact=True))


def decrypt_claim(value, keys):
    token = jwe.JWE()
    token.allowed_algs = JWE_ALGS
    token.deserialize(value)
    kid = token.jose_header.get("kid")
    candidates = [k for k in keys if k.has_private and (kid is None or k.get("kid") == kid)]
    if not candidates:
        raise Failure(f'no private key with kid "{kid}" in --decrypt-key')
    last = None
    for key in candidates:
        try:
            token.deserialize(value, key)
            return json.loads(token.payload)
        except Exception as e:  # try the next key: several may share no kid
            last = e
    raise Failure(f"cannot decrypt: {type(last).__name__}: {last}")


def cmd_verify(a):
    keyset = jwk.JWKSet()
    for key in key_list(a.keys, "--keys"):
        keyset.add(key)
    check = {"exp": None}
    if a.issuer:
        check["iss"] = a.issuer
    if a.audience:
        check["aud"] = a.audience
    try:
        token = jwt.JWT(jwt=a.token.strip(), key=keyset, algs=SIGNING_ALGS, check_claims=check)
    except Exception as e:
        raise Failure(f"token refused: {type(e).__name__}: {e}") from None
    claims = json.loads(token.claims)
    if "nbf" in claims and claims["nbf"] > time.time() + CLOCK_SKEW:
        raise Failure("token refused: not valid yet (nbf)")
    if a.decrypt_key:
        keys = key_list(a.decrypt_key, "--decrypt-key")
        for name in a.sensitive_claim:
            if name in claims:
                if not isinstance(claims[name], str):
                    raise Failure(f'claim "{name}": not a JWE string')
                claims[name] = decrypt_claim(claims[name], keys)
    print(json.dumps(claims, sort_keys=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen")
    p.add_argument("--type", choices=["ec", "rsa"], required=True)
    p.add_argument("--private", "--out", dest="private", required=True)
    p.add_argument("--public", required=True)
    p.add_argument("--kid")
    p.set_defaults(run=cmd_keygen)

    p = sub.add_parser("issue")
    p.add_argument("--issuer", required=True)
    p.add_argument("--audience", action="append", required=True)
    p.add_argument("--sign-key", required=True)
    p.add_argument("--alg")
    p.add_argument("--claims", default="{}")
    p.add_argument("--sensitive")
    p.add_argument("--sensitive-claim", default="pii")
    p.add_argument("--encrypt-to")
    p.add_argument("--ttl", default="300s")
    p.set_defaults(run=cmd_issue)

    p = sub.add_parser("verify")
    p.add_argument("token")
    p.add_argument("--keys", required=True)
    p.add_argument("--decrypt-key")
    p.add_argument("--sensitive-claim", action="append")
    p.add_argument("--issuer")
    p.add_argument("--audience")
    p.set_defaults(run=cmd_verify)

    a = parser.parse_args()
    if a.command == "verify" and not a.sensitive_claim:
        a.sensitive_claim = ["pii"]
    try:
        a.run(a)
    except Failure as e:
        print(f"jwcrypto_mint.py {a.command}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
