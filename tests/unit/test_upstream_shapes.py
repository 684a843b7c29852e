"""The private upstream code this project mirrors or calls, as it was when mirrored.

A few fast or hardened paths copy a library's private function, or call names the
library may rename in any release: kombu's Redis and AMQP transports, SQLAlchemy's
compiled-statement processors, botocore's SigV4 query signing. pyproject.toml pins
those libraries to the minor version that was checked; these tests say, loudly and by
name, which mirror to re-check when an upgrade changes what it mirrors.

A copied function is compared by a digest of its syntax tree (comments, docstrings and
layout left out), recorded from the version the pin admits. When one fails: read the
upstream function's new source beside the mirror the message names, bring the mirror
in line (or confirm it needs nothing), then record the digest the message prints and
move the pin in pyproject.toml.

The SQLAlchemy names are checked on SQLAlchemy's side only (nothing is imported from
the held reads), so these tests stay true wherever the reads that use them live.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from importlib.metadata import version
from typing import Any

import botocore.auth
import botocore.client
import botocore.utils
import kombu.message
import pytest
from amqp import Connection as AmqpConnection
from kombu.transport import pyamqp, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.scheduling import cycle_by_name
from sqlalchemy import Integer, String, bindparam, column, select, table
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

TRANSPORT = "worker/runtime/transport.py (Channel._brpop_read, _receive_item)"
AMQP_TRANSPORT = "worker/runtime/amqp_transport.py (Message.__init__)"
CONSUMER = (
    "raw_item, which keeps a Redis item aside (worker/runtime/dead_letters.py, was consumer.py)"
)
HELD = "the held reads (worker/adapters/postgres/held.py when this was written: Compiled)"
PRESIGNER = "worker/adapters/s3/presigner.py (FastPresigner)"


def shape_digest(function: Any) -> str:
    """sha256 of the function's syntax tree without docstrings: a comment or a reflowed
    line in a new release does not fail the test, a changed statement does."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def assert_unchanged(function: Any, recorded: str, package: str, mirror: str, recheck: str):
    digest = shape_digest(function)
    assert digest == recorded, (
        f"\n{package} {version(package)}: {function.__module__}.{function.__qualname__} "
        f"is not the code that was mirrored.\n"
        f"  Mirrored in: {mirror}\n"
        f"  Re-check: {recheck}\n"
        f"  Then record {digest} in tests/unit/test_upstream_shapes.py and move the "
        f"{package} pin in pyproject.toml."
    )


def assert_signature(function: Any, expected: str, package: str, mirror: str) -> None:
    found = str(inspect.signature(function))
    assert found == expected, (
        f"\n{package} {version(package)}: {function.__qualname__}{found}, "
        f"expected {function.__qualname__}{expected}.\n"
        f"  Called from: {mirror}: re-check the call, then move the {package} pin."
    )


# kombu: the Redis transport ---------------------------------------------------------


def test_kombu_brpop_read_is_the_one_copied():
    assert_unchanged(
        kombu_redis.Channel._brpop_read,
        "cf6e7a3c978ccf4b0355950b2bd8e33c03c46bdbfc222c6d2bc162898c6ecf65",
        "kombu",
        TRANSPORT,
        "the copy is kombu's own but for the popped item (examined, then delivered or "
        "kept aside); carry over anything else kombu changed: the error handling, the "
        "queue rotation, the finally block's reset and re-auth flush",
    )


def test_kombu_redis_channel_reads_brpop_through_the_overridable_method():
    # The override takes effect only because kombu looks the reader up on the instance.
    source = "".join(inspect.getsource(kombu_redis.Channel.__init__).split())
    assert "'BRPOP':self._brpop_read" in source, (
        f"\nkombu {version('kombu')}: Channel.__init__ no longer maps BRPOP replies to "
        f"self._brpop_read.\n  Overridden in: {TRANSPORT}: find where kombu now reads "
        f"BRPOP replies, or the examination of popped items is silently skipped."
    )


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (kombu_redis.Channel._brpop_read, "(self, **options)"),
        (kombu_redis.Channel._flush_brpop_reauth, "(self)"),
        (virtual.Transport._deliver, "(self, message, queue)"),
        (cycle_by_name(kombu_redis.Channel.queue_order_strategy).rotate, "(self, last_used)"),
    ],
    ids=["_brpop_read", "_flush_brpop_reauth", "Transport._deliver", "_queue_cycle.rotate"],
)
def test_kombu_redis_private_callables_keep_their_signatures(function, expected):
    assert_signature(function, expected, "kombu", TRANSPORT)


def test_kombu_redis_channel_keeps_its_private_state():
    channel = kombu_redis.Channel
    assert hasattr(channel, "_in_poll"), (
        f"\nkombu {version('kombu')}: Channel._in_poll is gone.\n"
        f"  Reset in: {TRANSPORT}: find what kombu now resets after a BRPOP reply."
    )
    assert "self._queue_cycle=cycle_by_name(" in "".join(
        inspect.getsource(channel.__init__).split()
    ), (
        f"\nkombu {version('kombu')}: Channel._queue_cycle is no longer built by "
        f"cycle_by_name.\n  Rotated in: {TRANSPORT}: re-check the rotation after a pop."
    )
    missing = [name for name in ("message_max_bytes",) if name in channel.from_transport_options]
    assert not missing, (
        f"\nkombu {version('kombu')}: Channel.from_transport_options now has {missing}.\n"
        f"  Added in: {TRANSPORT}: the project's option may now clash with kombu's own."
    )


def test_kombu_virtual_message_keeps_the_raw_payload():
    class Channel:
        def decode_body(self, body: Any, encoding: Any) -> Any:
            return body

    payload = {"properties": {"delivery_tag": "t"}, "body": ""}
    message = virtual.Message(payload, channel=Channel())
    assert getattr(message, "_raw", None) is payload, (
        f"\nkombu {version('kombu')}: virtual.Message no longer keeps its payload as "
        f"_raw.\n  Read in: {CONSUMER}: items set aside from Redis would lose their bytes."
    )


# kombu and py-amqp: the AMQP transport ----------------------------------------------


def test_kombu_pyamqp_message_init_is_the_one_mirrored():
    assert_unchanged(
        pyamqp.Message.__init__,
        "b044caee371c97a46e912b5a4046639cd9075728699ad6508d05698dd36bd31a",
        "kombu",
        AMQP_TRANSPORT,
        "a refused compressed body builds base.Message with the keywords pyamqp.Message "
        "passes (less the compression header): carry over any keyword added or changed",
    )


def test_kombu_base_message_takes_the_keywords_passed_to_it():
    parameters = inspect.signature(kombu.message.Message.__init__).parameters
    passed = {
        "body",
        "channel",
        "delivery_tag",
        "content_type",
        "content_encoding",
        "delivery_info",
        "properties",
        "headers",
    }
    missing = sorted(passed - set(parameters))
    assert not missing, (
        f"\nkombu {version('kombu')}: kombu.message.Message.__init__ no longer takes "
        f"{missing}.\n  Called from: {AMQP_TRANSPORT}: re-check how it builds a message."
    )


def test_kombu_pyamqp_builds_through_the_class_attributes_overridden():
    hooks = {
        "pyamqp.Transport.Connection": (pyamqp.Transport, "self.Connection("),
        "amqp.Connection.Channel": (AmqpConnection, "self.Channel("),
        "pyamqp.Channel.Message": (pyamqp.Channel, "self.Message("),
    }
    for hook, (owner, use) in hooks.items():
        assert use in inspect.getsource(owner), (
            f"\nkombu {version('kombu')}, amqp {version('amqp')}: {hook} is no longer "
            f"what builds it ({use!r} not found).\n  Overridden in: {AMQP_TRANSPORT}: "
            f"find where the class is now chosen, or compressed bodies inflate unchecked."
        )


# SQLAlchemy: the compiled statement's processors ------------------------------------


def test_sqlalchemy_bind_processors_is_the_property_used():
    prop = SQLCompiler.__dict__.get("_bind_processors")
    assert prop is not None and hasattr(prop, "fget"), (
        f"\nSQLAlchemy {version('SQLAlchemy')}: SQLCompiler._bind_processors is gone or "
        f"no longer a property.\n  Read by: {HELD}: find how SQLAlchemy now applies "
        f"bind processors to a compiled statement's values."
    )
    assert_unchanged(
        prop.fget,
        "1897a4dc9eba984b01f29231831a3a75440b40c0fcff23973999a3ffbb8ce45e",
        "SQLAlchemy",
        HELD,
        "the held reads apply each value's processor from this mapping (bind name to "
        "one callable; tuple types are never bound there): re-check the keys, the value "
        "types and which parameters are left out",
    )


def test_sqlalchemy_bind_processors_maps_bind_names_to_callables():
    # What the held reads rely on, asked of the psycopg dialect they compile for.
    videos = table("videos", column("id", Integer), column("name", String))
    statement = select(videos.c.name).where(videos.c.id == bindparam("video_id", type_=Integer))
    compiled = statement.compile(dialect=PGDialect_psycopg())
    processors = compiled._bind_processors  # noqa: SLF001 - the name under test
    assert isinstance(processors, dict) and set(processors) <= {"video_id"}, (
        f"\nSQLAlchemy {version('SQLAlchemy')}: _bind_processors is {processors!r}, not "
        f"a mapping of bind names.\n  Read by: {HELD}."
    )
    assert all(callable(process) for process in processors.values()), (
        f"\nSQLAlchemy {version('SQLAlchemy')}: _bind_processors holds non-callables "
        f"{processors!r}.\n  Applied by: {HELD}."
    )


def test_sqlalchemy_cached_result_processor_is_the_one_used():
    assert_signature(
        TypeEngine._cached_result_processor,
        "(self, dialect: 'Dialect', coltype: 'Any') -> 'Optional[_ResultProcessorType[_T]]'",
        "SQLAlchemy",
        HELD,
    )
    assert_unchanged(
        TypeEngine._cached_result_processor,
        "62f408e060c2e03806430b50433b29e460220d207fa2ab048b128a42bfedbeb5",
        "SQLAlchemy",
        HELD,
        "the held reads take each column's result processor from its type and the "
        "cursor's type_code, as SQLAlchemy's cursor result does: re-check that they "
        "still pair the same way",
    )


# botocore: the presigner -------------------------------------------------------------


def test_botocore_host_from_url_is_the_one_used():
    assert_signature(botocore.auth._host_from_url, "(url)", "botocore", PRESIGNER)
    assert_unchanged(
        botocore.auth._host_from_url,
        "df7f93d4b922fd3d8892d5c78965095a4b1df55a842f4f77e3dc82bf2f364e16",
        "botocore",
        PRESIGNER,
        "the signed host header is taken from it once per presigner: re-check the "
        "port, IPv6 and case rules against the signature botocore computes",
    )


def test_botocore_client_get_credentials_is_the_one_used():
    assert_signature(botocore.client.BaseClient._get_credentials, "(self)", "botocore", PRESIGNER)
    assert_unchanged(
        botocore.client.BaseClient._get_credentials,
        "94f34165c0be2a2b3d316637d9edce81be173e70212933d5e60fb89c5bf1f9f3",
        "botocore",
        PRESIGNER,
        "the presigner freezes these credentials once; re-check they are still the "
        "request signer's own (refreshing ones make it fall back to boto3)",
    )


def test_botocore_public_helpers_keep_their_form():
    assert botocore.auth.SIGV4_TIMESTAMP == "%Y%m%dT%H%M%SZ", (
        f"\nbotocore {version('botocore')}: SIGV4_TIMESTAMP is "
        f"{botocore.auth.SIGV4_TIMESTAMP!r}.\n  Used by: {PRESIGNER}."
    )
    assert_signature(
        botocore.utils.percent_encode, "(input_str, safe='-._~')", "botocore", PRESIGNER
    )


SIGV4_STEPS = [
    (
        botocore.auth.SigV4Auth.signature,
        "c8cc8acd4cd45d46e463c0ff4dc41588677147cc15a14a0b39d3cd4db9e1e39d",
    ),
    (
        botocore.auth.SigV4Auth.string_to_sign,
        "98f463cfc13f8aba046bdfcbae3fc1dd1f559853ba52f379600be525eea1138f",
    ),
    (
        botocore.auth.SigV4Auth.canonical_request,
        "b17eac0287d6f7c4ea61d90a6ad58c32e163dcf61467e976ed666bdd1a404360",
    ),
    (
        botocore.auth.SigV4Auth._canonical_query_string_url,
        "ed0db25d0a4a89500eb4fe0c2c310f0f2aedc3064a9819076954128e69fd6730",
    ),
    (
        botocore.auth.SigV4Auth.credential_scope,
        "d77e81b634abad893d1e14351f6e8e8ce3ce3c67c83d0e0bdabd188290117afa",
    ),
    (
        botocore.auth.SigV4QueryAuth._modify_request_before_signing,
        "2616f0cdf9180fc0a5fd8efd3333360992ef36f259a4657302e226b47c2c22ad",
    ),
    (
        botocore.auth.SigV4QueryAuth._inject_signature_to_request,
        "abdd5da8897c17c74463987fc2711bc05e74dce27ba5675a3550aa001ee53013",
    ),
    (
        botocore.auth.S3SigV4QueryAuth.payload,
        "0f78408ff8b5e6e5be42d321e84737893b3e209b62d640336ba62ed49cd1f0ca",
    ),
]


@pytest.mark.parametrize(
    ("step", "recorded"),
    SIGV4_STEPS,
    ids=[step.__qualname__ for step, _ in SIGV4_STEPS],
)
def test_botocore_sigv4_query_signing_is_the_one_repeated(step, recorded):
    # The presigner is used only when its probe URL equals boto3's; this says why it
    # stopped matching (or why it might for keys the probe does not cover).
    assert_unchanged(
        step,
        recorded,
        "botocore",
        f"{PRESIGNER}.sign and _Day",
        "the presigner writes the canonical request, the string to sign, the query "
        "parameters' order and the four-HMAC signing key by hand, step for step",
    )
