# SPDX-License-Identifier: Apache-2.0
"""Request-filter scenarios for bench/pair.py (issue 18): the same limit or the same token check, written as each
proxy writes it, added to the benchmark's configurations (bench/harness.py) of Jester, nginx and HAProxy.

    ratelimit        a per-client-address limit high enough that every request passes: the limiter's
                     bookkeeping on the normal path (Jester rate_limit, nginx limit_req, HAProxy stick table)
    ratelimit-flood  the same shape with a limit of 100 per second: nearly every request is refused with 429,
                     so this is the cost of a refusal (no upstream), the flood case
    jwt-rs256        a valid RS256 bearer token on every request, checked (signature, alg, iss, aud, exp) by
    jwt-es256        Jester's jwt filter or HAProxy's jwt_verify and jwt_*_query (nginx has no JWT module outside
    jwt-hs256        NGINX Plus); paired with --bare-a, the same binary and the same requests without the check

Every scenario sends the same requests to both sides, so `bench/pair.py X X --scenario S --bare-a` measures
what the filter alone costs per request (B − A).
"""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
AUTH_FIXTURES = HERE.parent / "Tests" / "Fixtures" / "auth"
sys.path.insert(0, str(HERE.parent / "Tests" / "Live"))
import jwt_tokens  # noqa: E402  (signs with the openssl CLI: no Python crypto package needed)

ISSUER = "https://issuer.bench"
AUDIENCE = "api"
# 32 bytes: Jester requires an HS256 secret at least as long as the hash.
HMAC_SECRET = "bench-secret-of-thirty-two-bytes"
# The fixture keys (Tests/Fixtures/auth) and their ids in the fixture JWKS.
SIGNING_KEYS = {"RS256": ("rsa.key", "rsa-1"), "ES256": ("ec256.key", "ec256-1"), "HS256": (None, None)}


@dataclass
class FilterScenario:
    """One filter, written for each proxy, and the request fields the load sends for it."""

    about: str
    # Rate limits: requests per second and the burst above it (nginx's burst, HAProxy's threshold is rate).
    rate: int = 0
    burst: int = 0
    # JWT: the algorithm of the token every request carries.
    algorithm: str = ""
    headers: list = field(default_factory=list)

    @property
    def kind(self):
        return "jwt" if self.algorithm else "rate_limit"

    def prepare(self, work):
        """Writes what the configurations refer to (keys, secrets) into `work` and makes the request fields."""
        if self.kind != "jwt":
            return
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench-user", "iat": now, "exp": now + 86_400}
        key_file, kid = SIGNING_KEYS[self.algorithm]
        if key_file:
            token = jwt_tokens.sign(claims, alg=self.algorithm, key=AUTH_FIXTURES / key_file, kid=kid)
            # HAProxy's jwt_verify reads a PEM public key (or certificate), loaded once at start.
            public = jwt_tokens._run("openssl", "pkey", "-in", str(AUTH_FIXTURES / key_file), "-pubout")
            (work / f"{self.algorithm}.pub.pem").write_bytes(public)
        else:
            token = jwt_tokens.sign(claims, alg="HS256", kid=None, secret=HMAC_SECRET.encode())
            (work / "hs256.secret").write_text(HMAC_SECRET)
        self.headers = [f"Authorization: Bearer {token}"]

    def apply(self, kind, text, work):
        """`text` (a configuration from bench/harness.py of proxy `kind`) with this filter on every request."""
        if kind == "jester":
            return self._jester(text, work)
        if kind == "nginx":
            if self.kind == "jwt":
                raise SystemExit("nginx (open source) has no JWT check: pair Jester with haproxy or with itself")
            return self._nginx(text)
        if kind == "haproxy":
            return self._haproxy(text, work)
        raise SystemExit(f"filter scenarios need jester, nginx or haproxy, not {kind}")

    # MARK: Jester

    def _jester(self, text, work):
        route = 'name = "default"\npath_prefix = "/"\nupstream = "origin"\n'
        assert route in text, "bench/harness.py's Jester configuration changed shape"
        text = text.replace(route, route + 'filters = ["bench"]\n')
        if self.kind == "rate_limit":
            return text + f"""
[filters.bench]
kind = "rate_limit"
rate = {self.rate}
per = "1s"
burst = {self.burst}
key = ["client_address"]
scope = "instance"
"""
        keys = (f'secret_file = "{work / "hs256.secret"}"' if self.algorithm == "HS256"
                else f'jwks_file = "{AUTH_FIXTURES / "jwks.json"}"')
        return text + f"""
[filters.bench]
kind = "jwt"
algorithms = ["{self.algorithm}"]
{keys}
issuers = ["{ISSUER}"]
audiences = ["{AUDIENCE}"]
"""

    # MARK: nginx

    def _nginx(self, text):
        # $binary_remote_addr: 4 bytes per IPv4 key, as nginx's documentation recommends; 10 MiB of zone holds
        # about 160,000 of them. nodelay: the burst passes at once and the excess is refused, as Jester's and
        # HAProxy's limits do.
        zone = (f"    limit_req_zone $binary_remote_addr zone=bench:10m rate={self.rate}r/s;\n"
                "    limit_req_status 429;\n")
        anchor = "    upstream origin {"
        location = "        location / { "
        assert anchor in text and location in text, "bench/harness.py's nginx configuration changed shape"
        return (text.replace(anchor, zone + anchor)
                .replace(location, location + f"limit_req zone=bench burst={self.burst} nodelay; "))

    # MARK: HAProxy

    def _haproxy(self, text, work):
        anchor = "\nbackend origin\n"
        assert anchor in text, "bench/harness.py's HAProxy configuration changed shape"
        if self.kind == "rate_limit":
            # http_req_rate(1s) is a sliding one-second count; requests over the threshold are refused. A refused
            # request is counted too (the track comes first), so in a flood HAProxy lets almost nothing through,
            # where GCRA (Jester) and nginx's leaky bucket let the rate through: the refusal's cost is what is
            # compared, and all three refuse over 99 % here.
            rules = f"""    stick-table type ip size 100k expire 60s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt {self.rate + self.burst} }}
"""
        else:
            # HAProxy's own recipe (its OAuth 2.0 tutorial): jwt_verify checks the signature only, so the
            # algorithm, issuer, audience and expiry are checked with jwt_*_query as Jester's filter checks them.
            key = HMAC_SECRET if self.algorithm == "HS256" else str(work / f"{self.algorithm}.pub.pem")
            rules = f"""    http-request deny deny_status 401 unless {{ req.hdr(authorization) -m beg "Bearer " }}
    http-request set-var(txn.alg) http_auth_bearer,jwt_header_query('$.alg')
    http-request set-var(txn.iss) http_auth_bearer,jwt_payload_query('$.iss')
    http-request set-var(txn.aud) http_auth_bearer,jwt_payload_query('$.aud')
    http-request set-var(txn.exp) http_auth_bearer,jwt_payload_query('$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 unless {{ var(txn.alg) -m str {self.algorithm} }}
    http-request deny deny_status 401 unless {{ var(txn.iss) -m str {ISSUER} }}
    http-request deny deny_status 401 unless {{ var(txn.aud) -m str {AUDIENCE} }}
    http-request deny deny_status 401 unless {{ http_auth_bearer,jwt_verify(txn.alg,"{key}") -m int 1 }}
    http-request deny deny_status 401 if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
"""
        return text.replace(anchor, "\n" + rules + anchor.lstrip("\n"), 1)


SCENARIOS = {
    "ratelimit": FilterScenario(
        about="a limit per client address of 100,000 per second, burst 1,000: every request passes", rate=100_000,
        burst=1_000),
    "ratelimit-flood": FilterScenario(
        about="a limit per client address of 100 per second, burst 50: nearly every request is refused (429)",
        rate=100, burst=50),
    "jwt-rs256": FilterScenario(about="a valid RS256 (RSA 2048) bearer token checked on every request",
                                algorithm="RS256"),
    "jwt-es256": FilterScenario(about="a valid ES256 (P-256) bearer token checked on every request",
                                algorithm="ES256"),
    "jwt-hs256": FilterScenario(about="a valid HS256 bearer token checked on every request", algorithm="HS256"),
}
