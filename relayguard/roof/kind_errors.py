"""Our errors as ONE line on stderr ('whose fault: what; what to do: ...') and exit code 2,
for commands run through the `relayguard` group or on their own (click's test runner)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from relayguard.foundation.errors import RelayguardError

F = TypeVar("F", bound=Callable[..., Any])


def one_line(text: str) -> str:
    return " ".join(text.split())


def explain_one_line(exc: RelayguardError) -> str:
    hint = f"; what to do: {exc.hint}" if exc.hint else ""
    return one_line(f"{exc.whose}: {exc}{hint}")


def kind_errors(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RelayguardError as exc:
            click.echo(explain_one_line(exc), err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
