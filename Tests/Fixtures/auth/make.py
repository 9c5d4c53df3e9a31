#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Generates the JesterAuth test fixtures once, with the openssl CLI and Python's crypt module (libxcrypt):
# keys, a JWKS, signed tokens and an htpasswd file. The outputs are committed so the tests are deterministic;
# rerun only to change them (python3 make.py, from this directory).
import base64, crypt, json, re, subprocess

def run(*args, data=None):
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout

def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

def segment(value):
    return b64u(json.dumps(value, separators=(",", ":")).encode())

def pub_hex(key, args):
    text = run("openssl", *args, "-in", key, "-noout", "-text").decode()
    return text

def rsa_components(key):
    text = run("openssl", "rsa", "-in", key, "-noout", "-modulus").decode()
    n = bytes.fromhex(text.strip().split("=")[1])
    return {"kty": "RSA", "n": b64u(n), "e": "AQAB"}

def ec_components(key, crv, size):
    der = run("openssl", "pkey", "-in", key, "-pubout", "-outform", "DER")
    point = der[-(2 * size + 1):]
    assert point[0] == 4
    return {"kty": "EC", "crv": crv, "x": b64u(point[1:1 + size]), "y": b64u(point[1 + size:])}

def ed_components(key):
    der = run("openssl", "pkey", "-in", key, "-pubout", "-outform", "DER")
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u(der[-32:])}

def der_to_raw(der, size):
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }
    assert der[0] == 0x30
    index = 2 if der[1] < 0x80 else 3
    values = []
    for _ in range(2):
        assert der[index] == 0x02
        length = der[index + 1]
        values.append(int.from_bytes(der[index + 2:index + 2 + length], "big"))
        index += 2 + length
    return b"".join(v.to_bytes(size, "big") for v in values)

def sign(alg, key, header_extra, claims):
    header = {"alg": alg, "typ": "JWT", **header_extra}
    signing_input = (segment(header) + "." + segment(claims)).encode()
    with open("/tmp/jester-signing-input", "wb") as f:
        f.write(signing_input)
    if alg.startswith("RS"):
        sig = run("openssl", "dgst", "-sha" + alg[2:], "-sign", key, "/tmp/jester-signing-input")
    elif alg.startswith("PS"):
        sig = run("openssl", "dgst", "-sha" + alg[2:], "-sigopt", "rsa_padding_mode:pss",
                  "-sigopt", "rsa_pss_saltlen:digest", "-sigopt", "rsa_mgf1_md:sha" + alg[2:],
                  "-sign", key, "/tmp/jester-signing-input")
    elif alg.startswith("ES"):
        der = run("openssl", "dgst", "-sha" + alg[2:], "-sign", key, "/tmp/jester-signing-input")
        sig = der_to_raw(der, {"256": 32, "384": 48}[alg[2:]])
    elif alg == "EdDSA":
        sig = run("openssl", "pkeyutl", "-sign", "-inkey", key, "-rawin", "-in", "/tmp/jester-signing-input")
    return signing_input.decode() + "." + b64u(sig)

run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "rsa.key")
run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", "rsa1024.key")
run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "ec384.key")
run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ec256.key")
run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521", "-out", "ec521.key")
run("openssl", "genpkey", "-algorithm", "ED25519", "-out", "ed25519.key")
with open("rsa.pub.pem", "wb") as f:
    f.write(run("openssl", "pkey", "-in", "rsa.key", "-pubout"))
with open("ec384.pub.pem", "wb") as f:
    f.write(run("openssl", "pkey", "-in", "ec384.key", "-pubout"))

keys = [
    {**rsa_components("rsa.key"), "kid": "rsa-1", "use": "sig"},
    {**ec_components("ec384.key", "P-384", 48), "kid": "ec384-1", "alg": "ES384"},
    {**ec_components("ec256.key", "P-256", 32), "kid": "ec256-1", "alg": "ES256", "use": "sig"},
    {**ed_components("ed25519.key"), "kid": "ed-1"},
    # The skipped ones: an unsupported curve, an encryption key, a weak RSA key, an unknown type.
    {**ec_components("ec521.key", "P-521", 66), "kid": "ec521-1"},
    {**rsa_components("rsa.key"), "kid": "rsa-enc", "use": "enc"},
    {**rsa_components("rsa1024.key"), "kid": "rsa-weak"},
    {"kty": "XYZ", "kid": "odd"},
]
with open("jwks.json", "w") as f:
    json.dump({"keys": keys}, f, indent=2)
    f.write("\n")

claims = {"iss": "https://id.example", "sub": "alice", "aud": ["jester", "other"], "exp": 2000000000,
          "nbf": 1600000000, "iat": 1600000000, "groups": ["admin", "ops"], "tier": 3}
tokens = {
    "PS256": sign("PS256", "rsa.key", {"kid": "rsa-1"}, claims),
    "RS512": sign("RS512", "rsa.key", {"kid": "rsa-1"}, claims),
    "RS256-no-kid": sign("RS256", "rsa.key", {}, claims),
    "ES384": sign("ES384", "ec384.key", {"kid": "ec384-1"}, claims),
    "ES256": sign("ES256", "ec256.key", {"kid": "ec256-1"}, claims),
    "EdDSA": sign("EdDSA", "ed25519.key", {"kid": "ed-1"}, claims),
    # Signed correctly, but announcing a key the set lists for encryption only.
    "RS256-enc-key": sign("RS256", "rsa.key", {"kid": "rsa-enc"}, claims),
    # The weak key's own valid signature.
    "RS256-weak-key": sign("RS256", "rsa1024.key", {"kid": "rsa-weak"}, claims),
}
with open("tokens.json", "w") as f:
    json.dump(tokens, f, indent=2)
    f.write("\n")

# htpasswd: one user per scheme (password = "<user>-secret"); bcrypt at cost 5 to keep the tests fast.
lines = ["# users for JesterAuthTests", ""]
lines.append("bob:" + run("openssl", "passwd", "-5", "-salt", "saltsalt", "bob-secret").decode().strip())
lines.append("carol:" + run("openssl", "passwd", "-6", "-salt", "saltsalt", "carol-secret").decode().strip())
lines.append("dave:" + crypt.crypt("dave-secret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5)))
lines.append("erin:" + crypt.crypt("erin-secret", "$5$rounds=10000$pepper$"))
with open("htpasswd", "w") as f:
    f.write("\n".join(lines) + "\n")
