"""Access-scope bench: the cost of a token per call, in process.

What it measures:

* ``verify``: microseconds per ``TokenVerifier.verify`` for HS256, EdDSA, ES256 and
  RS256, on first sight of a token (PyJWT's full verification: decoding, signature,
  claims) and for a token seen before (the verdict remembered until its ``exp``, what a
  caller reusing its token pays from its second call on);
* ``sign_url``: microseconds per ``videos.sign_url`` through the real task entry point
  (``ENTRY_POINTS["videos.sign_url"].apply``: Celery's tracer, ``ContractTask.respond``, the
  handler, the real S3 presigner) with ``AUTH_MODE=off`` and ``jwt`` (HS256), the
  repository an in-memory one so that the edge's share is not hidden behind PostgreSQL.

All variants are timed call by call in interleaved blocks, so load from other jobs on
the shared machine hits them alike. No service is started.

How to read the tables: p50/p95/p99 in microseconds. Targets: verify <= 50 us for HS256
and EdDSA; sign_url with auth on within 5 % of auth off (``vs off`` is the ratio of p50s).
Run: ``python -m bench.auth [--calls 5000]``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import US, Table, bench, interleaved, log, parser, ratio

BLOCK = 250
# Untimed calls first: imports, caches, the first PEM parse.
WARMUP = 20
VERIFY_TARGET_US = 50.0
SIGN_URL_TARGET_RATIO = 1.05
SECRET = "bench-secret-for-hs256-of-32-bytes!!"


def verifiers() -> dict[str, tuple[Any, Callable[[], str]]]:
    """Per algorithm: a verifier config and a maker of fresh tokens signed for it."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from worker.runtime.tokens import AuthConfig

    mall = str(uuid.uuid4())
    keys = {
        "HS256": (SECRET.encode(), SECRET.encode()),
        "EdDSA": (ed25519.Ed25519PrivateKey.generate(),) * 2,
        "ES256": (ec.generate_private_key(ec.SECP256R1()),) * 2,
        "RS256": (rsa.generate_private_key(public_exponent=65537, key_size=2048),) * 2,
    }
    made = {}
    for algorithm, (signing, verifying) in keys.items():
        public = verifying if algorithm == "HS256" else verifying.public_key()

        def fresh(signing: Any = signing, algorithm: str = algorithm) -> str:
            now = int(time.time())
            claims = {
                "sub": "bench",
                "role": "operator",
                "malls": [mall],
                "aud": "videoworker",
                "iat": now,
                "exp": now + 3600,
                "jti": str(uuid.uuid4()),
            }
            return jwt.encode(claims, signing, algorithm=algorithm)

        made[algorithm] = (AuthConfig(keys={algorithm: public}, audience="videoworker"), fresh)
    return made


def bench_verify(calls: int) -> Table:
    from worker.runtime.tokens import TokenVerifier

    methods: dict[str, Callable[[], object]] = {}
    for algorithm, (config, fresh) in verifiers().items():
        first_sight = TokenVerifier(config, cache_size=0)
        remembered = TokenVerifier(config)
        # Distinct tokens signed beforehand: signing is the caller's cost, not the worker's.
        tokens = iter([fresh() for _ in range(calls + 40)])
        again = fresh()
        methods[f"{algorithm} first sight"] = lambda v=first_sight, t=tokens: v.verify(next(t))
        methods[f"{algorithm} seen before"] = lambda v=remembered, t=again: v.verify(t)
    log(f"verify: {calls} tokens per variant")
    timed = interleaved(methods, calls, block=BLOCK, warmup=WARMUP, unit=US)
    stats = {name: samples.summary() for name, samples in timed.items()}
    table = Table(
        "token verification, microseconds per call",
        ["variant", "calls", "p50", "p95", "p99", "mean"],
        conditions=("in process",),
    )
    for name, s in stats.items():
        table.add(name, s.n, s.p50, s.p95, s.p99, s.mean)
    for algorithm in ("HS256", "EdDSA"):
        for kind in ("first sight", "seen before"):
            p50 = stats[f"{algorithm} {kind}"].p50
            table.verdict(
                f"{algorithm} {kind} p50 <= {VERIFY_TARGET_US:g} us",
                p50 <= VERIFY_TARGET_US,
                f"{p50:.1f} us",
            )
    return table


class OneVideo:
    """A unit of work whose catalogue knows one video: the handler's read costs nothing."""

    def __init__(self, video: Any) -> None:
        self.video = video
        self.catalogue = self

    def __call__(self) -> OneVideo:
        return self

    def __enter__(self) -> OneVideo:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def get(self, scope: Any, video_id: Any) -> Any:
        return self.video if scope.sees(self.video.mall_id, self.video.pin_id) else None


def bench_sign_url(calls: int) -> Table:
    from bench.signing import make_store
    from handlers.deps import Deps
    from schemas.responses import VideoDetailResponse
    from tasks.entrypoints import ENTRY_POINTS
    from worker.runtime import auth, tasking
    from worker.runtime.tokens import mint_token
    from worker.settings import load_settings

    mall, pin, video_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    video = VideoDetailResponse(
        id=video_id,
        mall_id=mall,
        pin_id=pin,
        pin_name="Entrance A",
        original_filename="clip.mp4",
        original_path=f"videos/{mall}/original/{video_id}.mp4",
        file_size_bytes=1_000,
        checksum_sha256=None,
        proxy_path=f"videos/{mall}/proxy/{video_id}.mp4",
        proxy_size_bytes=100,
        thumbnail_path=None,
        width=None,
        height=None,
        fps=None,
        duration_seconds=60.0,
        codec=None,
        processing_status="completed",
        processing_job_id=None,
        processing_error=None,
        processing_started_at=None,
        processing_completed_at=None,
        uploaded_at=datetime.now(UTC),
        recorded_at=None,
        created_at=None,
        updated_at=None,
        operator_notes=None,
    )
    deps = Deps(
        uow=OneVideo(video),
        store=make_store(),
        cache=None,  # type: ignore[arg-type]
        publish=lambda _event: None,
        enqueue=lambda *_: None,
    )
    tasking.get_deps = lambda: deps  # type: ignore[assignment]
    modes = {
        "off": load_settings(auth_mode="off"),
        "jwt": load_settings(auth_mode="jwt", auth_jwt_secret=SECRET),
    }
    current = {"settings": modes["off"]}
    auth.get_settings = lambda: current["settings"]  # type: ignore[assignment]
    operator = mint_token(
        SECRET, role="operator", subject="bench", ttl=timedelta(hours=1), malls=[mall]
    )
    kwargs = {"video_id": str(video_id), "target": "proxy"}

    def call(mode: str, token: str | None) -> Callable[[], object]:
        def run() -> object:
            current["settings"] = modes[mode]
            sent = dict(kwargs, auth=token) if token else kwargs
            envelope = ENTRY_POINTS["videos.sign_url"].apply(kwargs=sent).get()
            if not envelope["ok"]:
                raise SystemExit(f"sign_url failed in the bench: {envelope['error']}")
            return envelope

        return run

    # Minted beforehand: minting is the caller's cost, not the worker's.
    new_tokens = iter(
        [
            mint_token(
                SECRET, role="operator", subject="bench", ttl=timedelta(hours=1), malls=[mall]
            )
            for _ in range(calls + 40)
        ]
    )

    def new_token_each_call() -> object:
        return call("jwt", next(new_tokens))()

    methods = {
        "auth off": call("off", None),
        "auth on, token reused": call("jwt", operator),
        "auth on, new token each call": new_token_each_call,
    }
    log(f"sign_url: {calls} calls per variant")
    auth.reset()
    # Small blocks: the machine's load drifts within a second, and a whole task is long.
    timed = interleaved(methods, calls, block=25, warmup=WARMUP, unit=US)
    stats = {name: samples.summary() for name, samples in timed.items()}
    base = stats["auth off"].p50
    table = Table(
        "videos.sign_url through the task entry point, microseconds per call",
        ["variant", "calls", "p50", "p95", "p99", "mean", "vs off"],
        conditions=("in process", "in-memory repository"),
    )
    for name, s in stats.items():
        table.add(name, s.n, s.p50, s.p95, s.p99, s.mean, ratio(s.p50, base))
    reused = stats["auth on, token reused"].p50 / base
    table.verdict(
        f"auth on (token reused) within {SIGN_URL_TARGET_RATIO:.2f}x of off",
        reused <= SIGN_URL_TARGET_RATIO,
        f"{reused:.3f}x",
    )
    return table


@bench("auth")
def main(argv: Sequence[str] | None = None) -> int:
    options = parser("auth", __doc__)
    options.add_argument("--calls", type=int, default=5000, help="calls per variant")
    args = options.parse_args(argv)
    bench_verify(args.calls).print()
    bench_sign_url(args.calls).print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
