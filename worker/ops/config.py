"""``videoworker config``: the settings a command would use, and where each came from.

A command that talks to the wrong server looks just like one that talks to the right
one, until it hangs: this shows every setting's value and source (the environment,
the embedded stack's ``stack.env``, or the default) without a secret in it, and
``using_line`` says the same in one line at a terminal before a command starts.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import IO

from pydantic import SecretStr

from worker.settings import (
    SERVICE_VARIABLES,
    Settings,
    get_settings,
    setting_source,
    stack_env_file,
)

HIDDEN = "<hidden>"


def redact(url: str) -> str:
    """The URL with any password hidden, fit to print."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def shown(value: object) -> str:
    if isinstance(value, SecretStr):
        return HIDDEN
    if value is None:
        return ""
    text = str(value)
    return redact(text) if "://" in text else text


def rows(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(variable, value without secrets, source) for every setting."""
    table = []
    for field_name in type(settings).model_fields:
        variable = field_name.upper()
        source = setting_source(variable, environ) or "default"
        table.append((variable, shown(getattr(settings, field_name)), source))
    return table


def using_line(environ: Mapping[str, str] | None = None) -> str:
    """Where the service settings come from, in one line."""
    sources = {name: setting_source(name, environ) for name in SERVICE_VARIABLES}
    from_env = [name for name, source in sources.items() if source == "environment"]
    from_file = [name for name, source in sources.items() if source not in (None, "environment")]
    if from_file and not from_env:
        return f"videoworker: using the stack in {stack_env_file()}"
    if from_env and not from_file:
        return f"videoworker: using settings from the environment ({', '.join(from_env)})"
    if from_env:
        return (
            f"videoworker: using {', '.join(from_env)} from the environment, the rest from "
            f"{stack_env_file()}"
        )
    return "videoworker: using default settings (no service variable set, no stack.env)"


def announce(stream: IO[str] | None = None) -> None:
    """The using line, at a terminal only: a script's stderr stays as it was."""
    stream = stream or sys.stderr
    if stream.isatty():
        print(using_line(), file=stream, flush=True)


def command(args) -> int:  # noqa: ANN001 - the parsed arguments
    """``videoworker config``: ``NAME=value  # source``, one setting a line."""
    table = rows(get_settings())
    if args.services:
        table = [row for row in table if row[0] in SERVICE_VARIABLES]
    width = max(len(f"{name}={value}") for name, value, _ in table)
    for name, value, source in table:
        print(f"{name}={value}".ljust(width) + f"  # {source}")
    return 0


__all__ = ["announce", "command", "redact", "rows", "using_line"]
