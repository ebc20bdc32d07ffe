import pytest
import trio
import trio.testing

from service import Tick, every


async def test_first_tick_is_immediate_and_the_rest_fall_on_the_grid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stopping = trio.Event()
    start = trio.current_time()
    seen: list[float] = []
    async for tick in every(2.0, stopping=stopping):
        seen.append(trio.current_time() - start)
        await trio.sleep(0.7)  # the body's own time must not push the next tick back
        if tick.number == 4:
            break
    assert seen == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0])


async def test_overrun_fires_the_latest_missed_tick_at_once_and_skips_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stopping = trio.Event()
    start = trio.current_time()
    ticks: list[Tick] = []
    async for tick in every(1.0, stopping=stopping):
        ticks.append(tick)
        if tick.number == 0:
            await trio.sleep(3.5)  # overruns the deadlines at 1, 2 and 3
        if len(ticks) == 3:
            break
    assert [t.number for t in ticks] == [0, 3, 4]
    assert [t.skipped for t in ticks] == [0, 2, 0]
    assert [t.deadline - start for t in ticks] == pytest.approx([0.0, 3.0, 4.0])
    assert ticks[1].lateness == pytest.approx(0.5)
    assert ticks[2].lateness == pytest.approx(0.0)


async def test_iteration_ends_when_the_soft_stop_begins(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stopping = trio.Event()
    numbers: list[int] = []

    async def stop_later() -> None:
        await trio.sleep(10.5)
        stopping.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop_later)
        start = trio.current_time()
        async for tick in every(3.0, stopping=stopping):
            numbers.append(tick.number)
        ended = trio.current_time() - start
    assert numbers == [0, 1, 2, 3]
    assert ended == pytest.approx(10.5)  # woken by the stop, not by the next deadline


async def test_no_tick_after_the_stop_even_if_one_is_due() -> None:
    stopping = trio.Event()
    stopping.set()
    assert [tick async for tick in every(1.0, stopping=stopping)] == []


@pytest.mark.parametrize("interval", [0, -1.0, float("inf"), float("nan")])
def test_rejects_intervals_that_are_not_positive_and_finite(interval: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        every(interval, stopping=trio.Event())
