"""Callers' tokens: checking the configuration, verifying a token into a ``Scope``, and
minting development tokens (``videoworker token``).

Verification is PyJWT's, with the algorithm list fixed by the configuration, never by
the token: ``none`` is not in it, an HMAC secret is never tried against a token that
names a public-key algorithm, and a public key is never used as an HMAC secret. Every
refusal is an ``Unauthorized`` whose detail says what was wrong in words of ours; no
text of the token (nor of PyJWT's messages about it) is ever echoed.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt import exceptions as jwt_errors

from handlers.access import Scope
from schemas.contract import ROLES
from worker.settings import ConfigError, Settings

LEEWAY_SECONDS = 30
HMAC_ALGORITHMS = ("HS256",)
PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256", "EdDSA")
SUPPORTED_ALGORITHMS = HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS
REQUIRED_CLAIMS = ("exp", "sub", "role")
# RFC 7518: an HS256 key at least as long as the hash.
MIN_SECRET_BYTES = 32
# Bounds on what a token may carry: the text read, the subject stored as the audit's
# actor, and the ids a query filters on.
MAX_TOKEN_CHARS = 64 * 1024
MAX_SUBJECT_CHARS = 256
MAX_SCOPE_IDS = 1_000
# 9999-12-31T23:59:59Z: the last instant a datetime can hold.
MAX_EXP = 253_402_300_799
# Tokens verified lately, by digest: a caller sends the same token with call after call,
# and a token's verdict changes only when it expires. First in, first out past the size.
VERIFIED_CACHE_SIZE = 4096


class Unauthorized(Exception):
    """The envelope's ``unauthorized``; the detail is ours, never the token's text."""

    code = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class AuthConfig:
    """What ``AUTH_MODE=jwt`` verifies with, checked once at start-up."""

    # Algorithm -> the key that verifies it (bytes for HMAC, a public key object).
    keys: Mapping[str, Any]
    audience: str
    issuer: str | None = None
    leeway: float = LEEWAY_SECONDS
    algorithms: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.keys))


def _algorithm_of(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ConfigError(
        "Invalid configuration: AUTH_JWT_PUBLIC_KEY: must be an RSA, EC P-256 or Ed25519 "
        "public key in PEM"
    )


def load_public_key(pem: str) -> Any:
    # Environments often hold a PEM on one line with literal "\n".
    text = pem.replace("\\n", "\n").strip().encode()
    try:
        return serialization.load_pem_public_key(text)
    except (ValueError, TypeError):
        raise ConfigError(
            "Invalid configuration: AUTH_JWT_PUBLIC_KEY: not a PEM public key "
            "(-----BEGIN PUBLIC KEY-----)"
        ) from None


def _wanted_algorithms(text: str) -> list[str]:
    names = [name.strip() for name in text.replace(",", " ").split() if name.strip()]
    for name in names:
        if name.lower() == "none":
            raise ConfigError("Invalid configuration: AUTH_JWT_ALGORITHMS: none is never accepted")
        if name not in SUPPORTED_ALGORITHMS:
            raise ConfigError(
                f"Invalid configuration: AUTH_JWT_ALGORITHMS: {name[:20]!r} is not one of "
                + ", ".join(SUPPORTED_ALGORITHMS)
            )
    return names


def auth_config(settings: Settings) -> AuthConfig:
    """The verification keys of ``AUTH_MODE=jwt``, or a ConfigError naming the variable."""
    keys: dict[str, Any] = {}
    # An empty variable counts as unset.
    secret = (
        settings.auth_jwt_secret.get_secret_value().encode() if settings.auth_jwt_secret else b""
    )
    if secret:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"Invalid configuration: AUTH_JWT_SECRET: must be at least {MIN_SECRET_BYTES} "
                "bytes for HS256"
            )
        keys["HS256"] = secret
    if settings.auth_jwt_public_key:
        public_key = load_public_key(settings.auth_jwt_public_key)
        keys[_algorithm_of(public_key)] = public_key
    if not keys:
        raise ConfigError(
            "Invalid configuration: AUTH_MODE=jwt needs AUTH_JWT_PUBLIC_KEY (PEM: RS256, "
            "ES256, EdDSA) or AUTH_JWT_SECRET (HS256)"
        )
    wanted = _wanted_algorithms(settings.auth_jwt_algorithms)
    if wanted:
        unkeyed = [name for name in wanted if name not in keys]
        if unkeyed:
            variable = "AUTH_JWT_SECRET" if unkeyed[0] in HMAC_ALGORITHMS else "AUTH_JWT_PUBLIC_KEY"
            raise ConfigError(
                f"Invalid configuration: AUTH_JWT_ALGORITHMS: {unkeyed[0]} needs {variable} "
                "(of that kind)"
            )
        keys = {name: keys[name] for name in wanted}
    if not settings.auth_jwt_audience:
        raise ConfigError("Invalid configuration: AUTH_JWT_AUDIENCE: must not be empty")
    return AuthConfig(
        keys=keys, audience=settings.auth_jwt_audience, issuer=settings.auth_jwt_issuer or None
    )


def _ids(claims: Mapping[str, Any], name: str) -> frozenset[UUID]:
    value = claims.get(name)
    shape = f"auth: claim {name} must be a list of at most {MAX_SCOPE_IDS} UUID strings"
    if not isinstance(value, list) or len(value) > MAX_SCOPE_IDS:
        raise Unauthorized(shape)
    if not all(isinstance(item, str) for item in value):
        raise Unauthorized(shape)
    try:
        return frozenset(UUID(item) for item in value)
    except ValueError:
        raise Unauthorized(shape) from None


def scope_of(claims: Mapping[str, Any]) -> Scope:
    """The scope a token's claims grant, or ``Unauthorized`` when they are of the wrong
    shape. An admin's ``malls`` and ``pins``, if any, grant nothing more and are ignored."""
    subject = claims.get("sub")
    if (
        not isinstance(subject, str)
        or not subject.strip()
        or len(subject) > MAX_SUBJECT_CHARS
        # Stored as the audit's actor and written to logs: PostgreSQL refuses NUL in
        # text, and other control characters would forge log lines.
        or any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in subject)
    ):
        raise Unauthorized(
            f"auth: claim sub must be a non-empty string of at most {MAX_SUBJECT_CHARS} "
            "characters, without control characters"
        )
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthorized("auth: claim role must be admin, operator or tenant")
    if role == "operator":
        return Scope.operator(_ids(claims, "malls"), subject=subject)
    if role == "tenant":
        return Scope.tenant(_ids(claims, "pins"), subject=subject)
    return Scope.admin(subject=subject)


# PyJWT's errors, most specific first, as the details a caller is told.
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt_errors.ExpiredSignatureError, "auth: token expired"),
    (jwt_errors.ImmatureSignatureError, "auth: token not valid yet (nbf or iat in the future)"),
    (jwt_errors.InvalidAudienceError, "auth: wrong audience"),
    (jwt_errors.InvalidIssuerError, "auth: wrong issuer"),
    (jwt_errors.InvalidSignatureError, "auth: bad signature"),
    (jwt_errors.InvalidAlgorithmError, "auth: algorithm not accepted"),
    (jwt_errors.InvalidKeyError, "auth: bad signature"),
    (jwt_errors.InvalidSubjectError, "auth: claim sub must be a string"),
    (jwt_errors.InvalidIssuedAtError, "auth: claim iat must be a number"),
    (jwt_errors.DecodeError, "auth: not a well-formed JWT"),
)


class TokenVerifier:
    """Verifies a compact JWT into a Scope; one per process, built from ``AuthConfig``.

    A signature check costs tens to hundreds of microseconds (Ed25519 in OpenSSL, and
    PyJWT's own decoding), so each verdict is remembered until the token's ``exp`` (plus
    the leeway), keyed by a digest of the token: the text itself is not kept. A token not
    valid yet is never remembered, and every refusal is worked out again.
    """

    def __init__(self, config: AuthConfig, cache_size: int = VERIFIED_CACHE_SIZE) -> None:
        self.config = config
        self.cache_size = cache_size
        self._verified: dict[bytes, tuple[Scope, float]] = {}
        self._jwt = jwt.PyJWT()
        self._options = {"require": list(REQUIRED_CLAIMS), "strict_aud": True}
        # With one key, the token's header needs no reading before the verification.
        self._single_key = next(iter(config.keys.values())) if len(config.keys) == 1 else None

    def verify(self, token: object) -> Scope:
        if token is None:
            raise Unauthorized("auth: a token is required (AUTH_MODE=jwt)")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized(
                f"auth: must be a compact JWT string of at most {MAX_TOKEN_CHARS} characters"
            )
        digest = hashlib.blake2b(token.encode(), digest_size=16).digest()
        remembered = self._verified.get(digest)
        if remembered is not None:
            scope, good_until = remembered
            if time.time() <= good_until:
                return scope
            del self._verified[digest]
        scope, expires = self._verify(token)
        if self.cache_size:
            if len(self._verified) >= self.cache_size:
                del self._verified[next(iter(self._verified))]
            self._verified[digest] = (scope, expires + self.config.leeway)
        return scope

    def _verify(self, token: str) -> tuple[Scope, float]:
        """PyJWT's verification: the scope, and the ``exp`` it holds until."""
        try:
            key = self._single_key
            if key is None:
                key = self.config.keys.get(jwt.get_unverified_header(token).get("alg"))
                if key is None:
                    raise jwt_errors.InvalidAlgorithmError("not accepted")
            claims = self._jwt.decode(
                token,
                key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options=self._options,
            )
        except jwt_errors.MissingRequiredClaimError as exc:
            # The claim's name is PyJWT's constant, not the token's text.
            raise Unauthorized(f"auth: claim {exc.claim} missing") from None
        except jwt_errors.PyJWTError as exc:
            raise Unauthorized(_refusal(exc)) from None
        except (TypeError, ValueError, AttributeError, OverflowError):
            # A header that decodes to something other than an object, for one.
            raise Unauthorized("auth: not a well-formed JWT") from None
        if not isinstance(claims, dict):
            raise Unauthorized("auth: claims must be a JSON object")
        return scope_of(claims), expiry_of(claims)


def expiry_of(claims: Mapping[str, Any]) -> float:
    """``exp`` as RFC 7519 writes it, a JSON number of seconds, within what a clock shows.

    PyJWT reads ``exp`` with ``int()``, so it lets a numeric string through, and a
    400-digit number passes its comparison but overflows a float afterwards: both are
    refused here rather than half-accepted.
    """
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise Unauthorized("auth: claim exp must be a number (seconds since 1970)")
    if not 0 <= exp <= MAX_EXP:
        raise Unauthorized("auth: claim exp must be a date before the year 10000")
    return float(exp)


def _refusal(exc: Exception) -> str:
    for kind, detail in _REFUSALS:
        if isinstance(exc, kind):
            return detail
    return "auth: invalid token"


def mint_token(
    secret: str,
    *,
    role: str,
    subject: str,
    ttl: timedelta,
    malls: Iterable[UUID | str] = (),
    pins: Iterable[UUID | str] = (),
    audience: str = "videoworker",
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """An HS256 token for development and the tests: the claims the worker reads."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role,
        "aud": audience,
        "iat": issued,
        "exp": issued + int(ttl.total_seconds()),
        "jti": str(uuid.uuid4()),
    }
    if role == "operator":
        claims["malls"] = [str(mall) for mall in malls]
    if role == "tenant":
        claims["pins"] = [str(pin) for pin in pins]
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
