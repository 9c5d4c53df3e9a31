# SPDX-License-Identifier: Apache-2.0
"""JSON Web Tokens for the live tier, signed with the openssl CLI (no Python crypto package needed)."""

import base64
import hashlib
import hmac
import json
import subprocess
import tempfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "Fixtures" / "auth"


def b64u(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value):
    return b64u(json.dumps(value, separators=(",", ":")).encode())


def _run(*args, data=None):
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def _der_to_raw(der, size):
    """ECDSA-Sig-Value (DER) to the JWS form, r || s of fixed size."""
    index = 2 if der[1] < 0x80 else 3
    values = []
    for _ in range(2):
        length = der[index + 1]
        values.append(int.from_bytes(der[index + 2:index + 2 + length], "big"))
        index += 2 + length
    return b"".join(v.to_bytes(size, "big") for v in values)


def sign(claims, alg="RS256", key=FIXTURES / "rsa.key", kid="rsa-1", secret=None, header=None):
    """A compact JWS of `claims`: RS*/ES* with a PEM key file, HS* with `secret`, or alg "none" unsigned."""
    head = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {}), **(header or {})}
    signing_input = (segment(head) + "." + segment(claims)).encode()
    if alg == "none":
        return signing_input.decode() + "."
    if alg.startswith("HS"):
        digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[alg[2:]]
        signature = hmac.new(secret, signing_input, digest).digest()
    else:
        with tempfile.NamedTemporaryFile() as data:
            data.write(signing_input)
            data.flush()
            raw = _run("openssl", "dgst", "-sha" + alg[2:], "-sign", str(key), data.name)
        signature = _der_to_raw(raw, {"256": 32, "384": 48}[alg[2:]]) if alg.startswith("ES") else raw
    return signing_input.decode() + "." + b64u(signature)


def rsa_key(path):
    """A new 2048-bit RSA key at `path`."""
    _run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(path))
    return path


def rsa_jwk(path, kid):
    """The public JWK of an RSA key file."""
    text = _run("openssl", "rsa", "-in", str(path), "-noout", "-modulus").decode()
    modulus = bytes.fromhex(text.strip().split("=")[1])
    return {"kty": "RSA", "kid": kid, "use": "sig", "n": b64u(modulus), "e": "AQAB"}
