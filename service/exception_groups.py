"""Exception groups, unwrapped in one place (internal: not part of the public face).

With `strict_exception_groups` every nursery wraps what leaves it in an `ExceptionGroup`,
even a lone error, and nurseries nest: a `Cancelled`, a `KeyboardInterrupt` or a plain
`OSError` can arrive wrapped one, two or five levels deep. Code that asks "was this a
cancellation?" or "was this the `OSError` I handle?" must ask here, so that every place gives
the same answer:

- `cancellation_in(error)`: the `trio.Cancelled` an exception amounts to (itself, or a group
  of nothing but `Cancelled`), else None. For "was this only cancellation?".
- `holds(error, *types)`: whether an exception of one of `types` is anywhere in it (for
  `KeyboardInterrupt` and `SystemExit`, which must end the process however deeply a nursery
  wrapped them).
- `is_cancelled(error)`: whether a `trio.Cancelled` is anywhere in it, mixed with other errors
  or not. For cleanup that must run whenever cancellation is on its way through (give a job
  back, interrupt a statement) and then re-raise `error` as it is::

      try:
          await handle(job)
      except BaseException as exc:
          if is_cancelled(exc):  # a hard stop, even from inside the handler's own nursery
              with trio.CancelScope(shield=True):  # the scope around is cancelled
                  await release(job)
          raise

- `without_cancellation(error)`: what remains once every `Cancelled` is taken out (None if
  nothing does): the real failure of a group that mixes both.
- `leaves(error)`: every exception that is not a group, depth first.
- `sole(error)`: the one exception inside groups of one (itself if it is not such a group).
- `with lone_errors_unwrapped():` lets a group of exactly one exception out as that exception
  itself, its traceback, `__cause__` and `__context__` intact, so that callers' `except
  OSError:` (or `except DatabaseError:`) see it. A group of several is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import trio

__all__ = [
    "cancellation_in",
    "holds",
    "is_cancelled",
    "leaves",
    "lone_errors_unwrapped",
    "sole",
    "without_cancellation",
]


def leaves(error: BaseException) -> Iterator[BaseException]:
    """Every exception in `error` that is not itself a group, depth first (or `error`)."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def sole(error: BaseException) -> BaseException:
    """The exception inside a group of one (nested groups of one too), else `error` itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def cancellation_in(error: BaseException) -> trio.Cancelled | None:
    """The `Cancelled` that `error` amounts to: itself, or the first of a group made only of
    `Cancelled`s (at any depth); None when anything else is in it."""
    cancelled: trio.Cancelled | None = None
    for leaf in leaves(error):
        if not isinstance(leaf, trio.Cancelled):
            return None
        cancelled = cancelled or leaf
    return cancelled


def holds(error: BaseException, *types: type[BaseException]) -> bool:
    """Whether an exception of one of `types` is in `error` (or is `error`), at any depth."""
    return any(isinstance(leaf, types) for leaf in leaves(error))


def is_cancelled(error: BaseException) -> bool:
    """Whether a `trio.Cancelled` is in `error` at all, alone or beside other errors."""
    return holds(error, trio.Cancelled)


def without_cancellation(error: BaseException) -> BaseException | None:
    """`error` with every `Cancelled` taken out: None if nothing else was in it, a group (the
    same nesting, each group's traceback kept) when it was a group, else `error` itself."""
    if isinstance(error, trio.Cancelled):
        return None
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(trio.Cancelled)
        return rest
    return error


@contextmanager
def lone_errors_unwrapped() -> Iterator[None]:
    """Raise a group of one exception (at any depth) leaving the block as that exception.

    Its own traceback is kept (the frames where it was raised, then this one), and so are its
    `__cause__` and `__context__`, which a plain `raise error` inside an `except` block would
    overwrite with the group.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error = sole(group)
        if error is group:
            raise
        context, suppress = error.__context__, error.__suppress_context__
        try:
            raise error  # as itself: the group was only a wrapper
        finally:
            error.__context__, error.__suppress_context__ = context, suppress
