"""Token verification (PyJWT) into a Scope, and the start-up checks of AUTH_MODE=jwt."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from handlers.access import Scope
from worker.logs import Redactor
from worker.runtime.tokens import (
    AuthConfig,
    TokenVerifier,
    Unauthorized,
    auth_config,
    mint_token,
)
from worker.settings import ConfigError, load_settings

SECRET = "a-development-secret-of-32-bytes+"
MALL = uuid.uuid4()
PIN = uuid.uuid4()
SUB_SHAPE = (
    "auth: claim sub must be a non-empty string of at most 256 characters, "
    "without control characters"
)
EXP_NUMBER = "auth: claim exp must be a number (seconds since 1970)"


def hs256_verifier(**overrides) -> TokenVerifier:
    settings = load_settings(auth_mode="jwt", auth_jwt_secret=SECRET, **overrides)
    return TokenVerifier(auth_config(settings))


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {"sub": "alice", "role": "admin", "aud": "videoworker", "exp": now + 600, "iat": now}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(payload: dict, key=SECRET, algorithm="HS256", headers=None) -> str:
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def refusal(verifier: TokenVerifier, token: object) -> str:
    with pytest.raises(Unauthorized) as raised:
        verifier.verify(token)
    detail = raised.value.detail
    if isinstance(token, str) and token:
        # Neither the token nor any of its parts is ever echoed.
        assert token not in detail
        assert all(part not in detail for part in token.split(".") if len(part) > 4)
    return detail


def test_each_role_becomes_its_scope():
    verifier = hs256_verifier()

    assert verifier.verify(signed(claims())) == Scope.admin("alice")
    operator = signed(claims(role="operator", malls=[str(MALL)], sub="olga"))
    assert verifier.verify(operator) == Scope.operator([MALL], subject="olga")
    tenant = signed(claims(role="tenant", pins=[str(PIN), str(PIN)], sub="tom"))
    assert verifier.verify(tenant) == Scope.tenant([PIN], subject="tom")
    # An admin's malls grant nothing less and nothing more.
    assert verifier.verify(signed(claims(malls=[str(MALL)]))).sees_everything


def test_a_minted_token_verifies_to_what_was_asked():
    token = mint_token(
        SECRET, role="operator", subject="alice", ttl=timedelta(hours=1), malls=[MALL]
    )
    assert hs256_verifier().verify(token) == Scope.operator([MALL], subject="alice")


@pytest.mark.parametrize(
    ("token_claims", "expected"),
    [
        (lambda: claims(exp=int(time.time()) - 31), "auth: token expired"),
        (lambda: claims(aud="another-service"), "auth: wrong audience"),
        (lambda: claims(aud=["videoworker", "another"]), "auth: wrong audience"),
        (lambda: claims(aud=None), "auth: claim aud missing"),
        (lambda: claims(exp=None), "auth: claim exp missing"),
        (lambda: claims(sub=None), "auth: claim sub missing"),
        (lambda: claims(role=None), "auth: claim role missing"),
        (lambda: claims(role="root"), "auth: claim role must be admin, operator or tenant"),
        (lambda: claims(sub=""), SUB_SHAPE),
        # PostgreSQL refuses NUL in text: the audit's actor would fail the delete.
        (lambda: claims(sub="ali\x00ce"), SUB_SHAPE),
        (lambda: claims(sub="alice\nforged log line"), SUB_SHAPE),
        # PyJWT's int() reads it; a float of it would overflow afterwards.
        (lambda: claims(exp=10**400), "auth: claim exp must be a date before the year 10000"),
        (lambda: claims(exp=str(int(time.time()) + 600)), EXP_NUMBER),
        (lambda: claims(exp=-5), "auth: token expired"),
        (lambda: claims(sub=42), "auth: claim sub must be a string"),
        (
            lambda: claims(nbf=int(time.time()) + 120),
            "auth: token not valid yet (nbf or iat in the future)",
        ),
    ],
)
def test_a_token_with_bad_claims_is_unauthorized_and_says_which(token_claims, expected):
    # Built now, not when the tests were collected: times are relative to this moment.
    assert refusal(hs256_verifier(), signed(token_claims())) == expected


@pytest.mark.parametrize(
    "scope_claims",
    [
        {"role": "operator"},
        {"role": "operator", "malls": str(MALL)},
        {"role": "operator", "malls": ["not-a-uuid"]},
        {"role": "operator", "malls": [123]},
        {"role": "tenant", "malls": [str(MALL)]},
        {"role": "tenant", "pins": [str(PIN)] * 1_001},
    ],
)
def test_scope_claims_of_the_wrong_shape_are_unauthorized(scope_claims):
    detail = refusal(hs256_verifier(), signed(claims(**scope_claims)))
    assert detail.startswith("auth: claim malls") or detail.startswith("auth: claim pins")


def test_expiry_has_thirty_seconds_of_leeway():
    verifier = hs256_verifier()
    assert verifier.verify(signed(claims(exp=int(time.time()) - 20))).subject == "alice"


def test_missing_malformed_and_badly_signed_tokens_are_unauthorized():
    verifier = hs256_verifier()

    assert refusal(verifier, None) == "auth: a token is required (AUTH_MODE=jwt)"
    assert refusal(verifier, 42).startswith("auth: must be a compact JWT string")
    assert refusal(verifier, "x" * 70_000).startswith("auth: must be a compact JWT string")
    assert refusal(verifier, "not.a.jwt") == "auth: not a well-formed JWT"
    assert refusal(verifier, "onlyonepart") == "auth: not a well-formed JWT"
    other_key = "another-secret-of-at-least-32-bytes!!"
    assert refusal(verifier, signed(claims(), key=other_key)) == "auth: bad signature"
    token = signed(claims())
    head, payload, signature = token.split(".")
    forged = signed(claims(role="admin", sub="mallory")).split(".")[1]
    assert refusal(verifier, f"{head}.{forged}.{signature}") == "auth: bad signature"


def test_alg_none_is_never_accepted():
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert refusal(hs256_verifier(), unsigned) == "auth: algorithm not accepted"
    # Even with "none" asked for by name, the configuration refuses to start.
    with pytest.raises(ConfigError, match="AUTH_JWT_ALGORITHMS: none is never accepted"):
        hs256_verifier(auth_jwt_algorithms="HS256,none")


def test_the_issuer_is_checked_when_one_is_configured():
    verifier = hs256_verifier(auth_jwt_issuer="https://id.example")

    assert verifier.verify(signed(claims(iss="https://id.example"))).subject == "alice"
    assert refusal(verifier, signed(claims(iss="https://evil.example"))) == "auth: wrong issuer"
    assert refusal(verifier, signed(claims())) == "auth: claim iss missing"


def _pem(private_key) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    ("algorithm", "private_key"),
    [
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ],
)
def test_public_key_algorithms_verify_and_an_hmac_token_is_refused(algorithm, private_key):
    pem = _pem(private_key)
    config = auth_config(load_settings(auth_mode="jwt", auth_jwt_public_key=pem))
    verifier = TokenVerifier(config)

    assert config.algorithms == (algorithm,)
    assert verifier.verify(signed(claims(), private_key, algorithm)) == Scope.admin("alice")
    # The key confusion attack: an HS256 token "signed" with the public key's text.
    assert refusal(verifier, signed(claims(), SECRET)) == "auth: algorithm not accepted"
    # A PEM given on one line with literal \n, as environments often hold it.
    one_line = load_settings(auth_mode="jwt", auth_jwt_public_key=pem.replace("\n", "\\n"))
    assert auth_config(one_line).algorithms == (algorithm,)


def test_a_secret_and_a_public_key_together_each_verify_their_own_algorithm():
    private_key = ed25519.Ed25519PrivateKey.generate()
    settings = load_settings(
        auth_mode="jwt", auth_jwt_secret=SECRET, auth_jwt_public_key=_pem(private_key)
    )
    verifier = TokenVerifier(auth_config(settings))

    assert verifier.verify(signed(claims(sub="hs"))).subject == "hs"
    assert verifier.verify(signed(claims(sub="ed"), private_key, "EdDSA")).subject == "ed"
    narrowed = auth_config(settings.model_copy(update={"auth_jwt_algorithms": "EdDSA"}))
    assert refusal(TokenVerifier(narrowed), signed(claims())) == "auth: algorithm not accepted"


def test_jwt_with_no_key_stops_start_up_naming_the_variables():
    with pytest.raises(ConfigError) as raised:
        load_settings(auth_mode="jwt")
    assert "AUTH_JWT_PUBLIC_KEY" in str(raised.value) and "AUTH_JWT_SECRET" in str(raised.value)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"auth_jwt_secret": "short"}, "AUTH_JWT_SECRET: must be at least 32 bytes"),
        ({"auth_jwt_public_key": "-----BEGIN NOTHING-----"}, "AUTH_JWT_PUBLIC_KEY: not a PEM"),
        (
            {"auth_jwt_secret": SECRET, "auth_jwt_algorithms": "RS256"},
            "RS256 needs AUTH_JWT_PUBLIC_KEY",
        ),
        (
            {"auth_jwt_secret": SECRET, "auth_jwt_algorithms": "HS512"},
            "AUTH_JWT_ALGORITHMS: 'HS512'",
        ),
        ({"auth_jwt_secret": SECRET, "auth_jwt_audience": ""}, "AUTH_JWT_AUDIENCE"),
    ],
)
def test_a_misconfigured_key_names_its_variable(settings, named):
    with pytest.raises(ConfigError, match=named):
        auth_config(load_settings(auth_mode="jwt", **settings))


def test_an_rsa_key_too_small_or_an_unsupported_curve_is_refused_at_start_up():
    p384 = _pem(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(ConfigError, match="AUTH_JWT_PUBLIC_KEY: must be an RSA, EC P-256"):
        auth_config(load_settings(auth_mode="jwt", auth_jwt_public_key=p384))


def test_the_log_redactor_blanks_any_token_and_its_signature():
    token = mint_token(SECRET, role="admin", subject="alice", ttl=timedelta(minutes=5))
    line = Redactor().scrub(f"kwargs={{'auth': '{token}', 'video_id': 'v'}}")

    assert token not in line and token.split(".")[2] not in line
    assert "[redacted]" in line and "video_id" in line


def test_verifier_config_lists_its_algorithms_in_key_order():
    config = AuthConfig(keys={"HS256": b"k" * 32}, audience="videoworker")
    assert config.algorithms == ("HS256",)


def test_a_remembered_verdict_lasts_until_exp_and_keeps_no_token_text(monkeypatch):
    from worker.runtime import tokens

    verifier = hs256_verifier()
    now = time.time()
    token = signed(claims(exp=int(now) + 60))
    assert verifier.verify(token).subject == "alice"
    assert all(token not in repr(entry) for entry in verifier._verified.items())

    monkeypatch.setattr(tokens.time, "time", lambda: now + 60 + 29)
    assert verifier.verify(token).subject == "alice"  # within the leeway
    monkeypatch.setattr(tokens.time, "time", lambda: now + 60 + 31)

    # Past it, the token is worked out again; PyJWT reads a clock of its own, so it is
    # told the time has come as well.
    def expired(*_: object) -> None:
        raise tokens.jwt_errors.ExpiredSignatureError("Signature has expired")

    monkeypatch.setattr(tokens.jwt.PyJWT, "_validate_exp", expired)
    assert refusal(verifier, token) == "auth: token expired"


def test_the_verdict_cache_is_bounded_and_never_holds_a_refusal():
    verifier = TokenVerifier(auth_config(load_settings(auth_mode="jwt", auth_jwt_secret=SECRET)), 3)
    for index in range(5):
        verifier.verify(signed(claims(sub=f"user-{index}")))
    assert len(verifier._verified) == 3
    refusal(verifier, signed(claims(role="root")))
    refusal(verifier, signed(claims(nbf=int(time.time()) + 120)))
    assert len(verifier._verified) == 3


@pytest.fixture
def start_with(monkeypatch: pytest.MonkeyPatch):
    """Runs the worker's start-up check of AUTH_MODE=jwt under these settings."""
    from worker.runtime import auth

    def check(**settings) -> None:
        loaded = load_settings(auth_mode="jwt", **settings)
        monkeypatch.setattr(auth, "get_settings", lambda: loaded)
        auth.reset()
        auth.check_configuration()

    yield check
    auth.reset()


def test_a_worker_whose_own_token_its_verification_refuses_does_not_start(start_with):
    """AUTH_JWT_ALGORITHMS narrowed to RS256 with a leftover AUTH_JWT_SECRET: the secret
    must not mint HS256 service tokens that every scheduled task would be refused."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs256 = {"auth_jwt_public_key": _pem(private_key), "auth_jwt_algorithms": "RS256"}
    admin = signed(claims(sub="videoworker", exp=int(time.time()) + 86400), private_key, "RS256")

    # The RS256 service token is what beat's schedule gets: the worker starts.
    start_with(auth_jwt_secret=SECRET, auth_service_token=admin, **rs256)
    from worker.runtime import auth

    assert auth.service_token() == admin

    with pytest.raises(ConfigError, match="AUTH_SERVICE_TOKEN: .*algorithm not accepted"):
        start_with(auth_jwt_secret=SECRET, auth_service_token=signed(claims()), **rs256)
    with pytest.raises(ConfigError, match="beat's schedule needs the worker's own token"):
        start_with(auth_jwt_secret=SECRET, **rs256)
    tenant = signed(claims(role="tenant", pins=[str(PIN)]), private_key, "RS256")
    with pytest.raises(ConfigError, match="must be an admin's \\(it is a tenant's\\)"):
        start_with(auth_service_token=tenant, **rs256)
    expired = signed(claims(exp=int(time.time()) - 3600), private_key, "RS256")
    with pytest.raises(ConfigError, match="AUTH_SERVICE_TOKEN: .*token expired"):
        start_with(auth_service_token=expired, **rs256)


def test_a_worker_with_a_secret_mints_its_own_admin_token_and_starts(start_with):
    start_with(auth_jwt_secret=SECRET)
    from worker.runtime import auth

    assert auth.verifier().verify(auth.service_token()) == Scope.admin("videoworker")
