"""The one helper that unwraps exception groups: what each question answers, on real nurseries."""

from __future__ import annotations

import traceback

import pytest
import trio

from service.exception_groups import (
    cancellation_in,
    holds,
    is_cancelled,
    leaves,
    lone_errors_unwrapped,
    sole,
    without_cancellation,
)


async def _cancelled_inside_a_nursery() -> BaseException:
    """What a hard-cancelled handler that opened a nursery raises: a group of `Cancelled`s."""
    with trio.CancelScope() as outer:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                outer.cancel(reason="hard stop")
                await trio.sleep_forever()
        except BaseException as exc:  # the test looks at it, then lets it go
            caught = exc
            raise
    return caught


async def test_a_cancelled_wrapped_by_a_nursery_is_still_a_cancellation() -> None:
    error = await _cancelled_inside_a_nursery()
    assert isinstance(error, BaseExceptionGroup)  # what `except trio.Cancelled` misses
    cancelled = cancellation_in(error)
    assert cancelled is not None
    assert cancelled.reason == "hard stop"
    assert is_cancelled(error)
    assert without_cancellation(error) is None


async def test_a_group_mixing_cancellation_and_a_crash_is_cancelled_but_not_only_that() -> None:
    crash = RuntimeError("boom")
    cancelled = await _cancelled_inside_a_nursery()
    group = BaseExceptionGroup("", [cancelled, ExceptionGroup("", [crash])])
    assert cancellation_in(group) is None
    assert is_cancelled(group)
    assert holds(group, KeyError, RuntimeError)
    assert not holds(group, KeyboardInterrupt, SystemExit)
    rest = without_cancellation(group)
    assert rest is not None
    assert list(leaves(rest)) == [crash]


def test_plain_exceptions_answer_as_themselves() -> None:
    error = OSError("refused")
    assert cancellation_in(error) is None
    assert not is_cancelled(error)
    assert without_cancellation(error) is error
    assert sole(error) is error
    assert list(leaves(error)) == [error]


def test_sole_unwraps_nested_groups_of_one_but_not_groups_of_several() -> None:
    inner = KeyError("k")
    assert sole(ExceptionGroup("a", [ExceptionGroup("b", [inner])])) is inner
    several = ExceptionGroup("a", [inner, ValueError("v")])
    assert sole(several) is several


def _refuse() -> None:
    raise ConnectionError("the cause")


def _raise_with_cause() -> None:
    try:
        _refuse()
    except ConnectionError as exc:
        raise OSError("refused") from exc


async def test_a_lone_error_leaves_the_block_as_itself_with_its_history() -> None:
    with pytest.raises(OSError, match="refused") as caught, lone_errors_unwrapped():  # noqa: PT012
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as inner:
                inner.start_soon(trio.to_thread.run_sync, _raise_with_cause)
            outer.cancel_scope.cancel()
    error = caught.value
    assert isinstance(error.__cause__, ConnectionError)
    assert not isinstance(error.__context__, BaseExceptionGroup)
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert "_raise_with_cause" in frames  # where it was raised, not only where it was unwrapped


async def test_several_errors_stay_a_group() -> None:
    async def fail(message: str) -> None:
        raise ValueError(message)

    with pytest.RaisesGroup(ValueError, ValueError), lone_errors_unwrapped():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail, "one")
            nursery.start_soon(fail, "two")
