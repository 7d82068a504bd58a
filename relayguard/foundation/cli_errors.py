"""Shared bits of the command line: our errors printed as 'whose fault, what to do'."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from relayguard.foundation.errors import RelayguardError

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Print our errors as 'whose fault: what, what to do' and exit 2 instead of a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RelayguardError as exc:
            click.echo(exc.explain(), err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
