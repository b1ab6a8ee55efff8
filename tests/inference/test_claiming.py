"""The claims an inference actor keeps (inference/claiming.py): the queue's fair order, and
taking, renewing, losing and letting go of leases, on the in-memory claims with a clock the test
moves."""

from __future__ import annotations

from masklog.inference.claiming import ClaimKeeper, ClaimPolicy, fair_order, media_key, track_key
from masklog.server.claims import MemoryClaims


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_queue_takes_requesters_in_turn() -> None:
    running = {
        "a1": ("m", "user:alice"),
        "a2": ("m", "user:alice"),
        "a3": ("m", "user:alice"),
        "b1": ("m", "user:bob"),
        "c1": ("n", "user:carol"),
        "b2": ("m", "user:bob"),
    }
    assert fair_order(running) == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert fair_order({}) == []


async def test_one_holder_per_track_until_its_lease_runs_out() -> None:
    clock = Clock()
    claims = MemoryClaims(clock)
    first = ClaimKeeper(claims, ClaimPolicy("w1", lease_s=10))
    second = ClaimKeeper(claims.another(), ClaimPolicy("w2", lease_s=10))
    assert await first.take_track("t")
    assert not await second.take_track("t")
    clock.now += 6
    assert await first.renew() == (set(), set())  # renewed: 10 s from now
    clock.now += 6
    assert not await second.take_track("t")
    clock.now += 11  # first stopped renewing (it died)
    assert await second.take_track("t")
    lost_tracks, _ = await first.renew()
    assert lost_tracks == {"t"} and "t" not in first.tracks
    assert (await claims.holders([track_key("t")]))[track_key("t")].holder == "w2"


async def test_a_media_items_clicks_stay_with_one_holder_while_it_uses_them() -> None:
    clock = Clock()
    claims = MemoryClaims(clock)
    first = ClaimKeeper(claims, ClaimPolicy("w1", lease_s=10, media_idle_s=60), clock=clock)
    second = ClaimKeeper(claims.another(), ClaimPolicy("w2", lease_s=10, media_idle_s=60), clock=clock)
    assert await first.take_media("m")
    assert not await second.take_media("m")
    # Renewed while it answers clicks; let go once idle, and then the other may take it.
    for _ in range(8):
        clock.now += 5
        await first.renew()
    assert await first.take_media("m")
    clock.now += 61
    await first.renew()
    await first.drop_idle_media()
    assert "m" not in first.media
    assert media_key("m") not in await claims.holders([media_key("m")])
    clock.now += 5  # past the time the other one was told to wait before asking again
    assert await second.take_media("m")


async def test_letting_go_frees_everything_at_once() -> None:
    claims = MemoryClaims(Clock())
    keeper = ClaimKeeper(claims, ClaimPolicy("w1"))
    await keeper.take_track("t1")
    await keeper.take_track("t2")
    await keeper.take_media("m")
    await keeper.drop_track("t1")
    assert set(await claims.holders()) == {track_key("t2"), media_key("m")}
    await keeper.release_all()
    assert await claims.holders() == {}
