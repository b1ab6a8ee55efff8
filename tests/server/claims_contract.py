"""The behaviour every `WorkClaims` backend must have, written once.

A backend's test module subclasses `ClaimsContract` (not collected by itself: its name does not
start with `Test`) and implements `open_claims` (fresh, empty claims) and `open_another` (a
second handle on the same storage, as another process opens it). Leases of 0.2 s and sleeps of
0.3 s test expiry; what must still be held gets leases of seconds, so a slow machine cannot make
it run out.

`claims_in_processes` races real OS processes on one storage (the backends' modules use it).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from masklog.server.claims import MAX_KEY_LENGTH, MAX_KEYS, MAX_LEASE_S, Claim, ClaimsClosed, WorkClaims, WorkerInfo

EXPIRES = 0.2
AFTER_EXPIRY = 0.3
LONG = 30.0


def worker(id: str, **changes: object) -> WorkerInfo:
    fields: dict[str, object] = {
        "host": "gpu-1",
        "pid": 4242,
        "backend": "classical",
        "trackers": ["classical", "simple", "interpolation"],
        "segmenter": "classical",
        "device": "cpu",
        "started_at": 1_700_000_000.5,
    }
    fields.update(changes)
    return WorkerInfo(id=id, **fields)  # type: ignore[arg-type]


async def held(claims: WorkClaims) -> dict[str, str]:
    return {key: claim.holder for key, claim in (await claims.holders()).items()}


class ClaimsContract:
    # -- what a backend provides --------------------------------------------------------------

    async def open_claims(self) -> WorkClaims:
        """New, empty claims; the suite closes them."""
        raise NotImplementedError

    async def open_another(self, claims: WorkClaims) -> WorkClaims:
        """A second handle on the same storage as `claims`; the suite closes it."""
        raise NotImplementedError

    @pytest.fixture
    async def claims(self) -> AsyncIterator[WorkClaims]:
        claims = await self.open_claims()
        try:
            yield claims
        finally:
            await claims.close()

    @pytest.fixture
    async def other(self, claims: WorkClaims) -> AsyncIterator[WorkClaims]:
        other = await self.open_another(claims)
        try:
            yield other
        finally:
            await other.close()

    # -- claims -------------------------------------------------------------------------------

    async def test_a_free_key_is_granted_then_refused_to_others(self, claims: WorkClaims) -> None:
        assert await claims.claim("track:1", "w1", LONG)
        assert not await claims.claim("track:1", "w2", LONG)
        assert await claims.claim("track:1", "w1", LONG)  # its holder again: renewed
        assert await claims.claim("media:7", "w2", LONG)
        found = await claims.holders()
        assert set(found) == {"track:1", "media:7"}
        assert found["track:1"].key == "track:1" and found["track:1"].holder == "w1"
        assert 0 < found["track:1"].expires_in_s <= LONG and found["track:1"].expires_in_s > LONG - 10

    async def test_claiming_again_renews_the_lease(self, claims: WorkClaims) -> None:
        assert await claims.claim("k", "w1", EXPIRES)
        assert await claims.claim("k", "w1", LONG)
        await asyncio.sleep(AFTER_EXPIRY)
        assert await held(claims) == {"k": "w1"}
        assert not await claims.claim("k", "w2", LONG)

    async def test_an_expired_lease_is_taken_over(self, claims: WorkClaims) -> None:
        assert await claims.claim("k", "w1", EXPIRES)
        await asyncio.sleep(AFTER_EXPIRY)
        assert await claims.holders() == {}  # live claims only
        assert await claims.claim("k", "w2", LONG)
        assert await held(claims) == {"k": "w2"}
        assert await claims.renew("w1", ["k"], LONG) == set()  # lost
        assert not await claims.claim("k", "w1", LONG)

    async def test_renew_returns_only_the_keys_still_held(self, claims: WorkClaims) -> None:
        for key in ("a", "b", "c"):
            assert await claims.claim(key, "w1", EXPIRES)
        assert await claims.claim("d", "w2", LONG)
        await asyncio.sleep(AFTER_EXPIRY)
        assert await claims.claim("b", "w2", LONG)  # ran out and taken: lost to w1
        # a and c ran out but nobody took them: renewed; d is another's, e nobody's.
        assert await claims.renew("w1", ["a", "b", "c", "d", "e"], LONG) == {"a", "c"}
        found = await claims.holders()
        assert {key: claim.holder for key, claim in found.items()} == {"a": "w1", "b": "w2", "c": "w1", "d": "w2"}
        assert found["a"].expires_in_s > LONG - 10
        assert await claims.renew("w1", [], LONG) == set()
        assert await claims.renew("w1", ("a", "a"), LONG) == {"a"}

    async def test_renewing_extends_the_lease(self, claims: WorkClaims) -> None:
        assert await claims.claim("k", "w1", EXPIRES)
        assert await claims.renew("w1", {"k"}, LONG) == {"k"}
        await asyncio.sleep(AFTER_EXPIRY)
        assert await held(claims) == {"k": "w1"}
        assert not await claims.claim("k", "w2", LONG)

    async def test_release_frees_only_the_holders_keys(self, claims: WorkClaims) -> None:
        assert await claims.claim("a", "w1", LONG)
        assert await claims.claim("b", "w1", LONG)
        await claims.release("w2", ["a"])  # not w2's: nothing happens
        assert await held(claims) == {"a": "w1", "b": "w1"}
        await claims.release("w1", ["a", "never-claimed"])
        assert await held(claims) == {"b": "w1"}
        assert await claims.claim("a", "w2", LONG)
        assert await claims.renew("w1", ["a", "b"], LONG) == {"b"}
        await claims.release("w1", [])

    async def test_holders_of_some_keys(self, claims: WorkClaims) -> None:
        assert await claims.claim("a", "w1", LONG)
        assert await claims.claim("b", "w2", LONG)
        assert await claims.claim("gone", "w2", EXPIRES)
        await asyncio.sleep(AFTER_EXPIRY)
        found = await claims.holders(["a", "gone", "missing"])
        assert list(found) == ["a"] and isinstance(found["a"], Claim) and found["a"].holder == "w1"
        assert await claims.holders([]) == {}
        assert set(await claims.holders()) == {"a", "b"}

    async def test_keys_at_the_limits(self, claims: WorkClaims) -> None:
        longest = "k" * MAX_KEY_LENGTH
        for key in (longest, "clé ✓ 軌跡", "a b\n'\";--"):
            assert await claims.claim(key, "w" * MAX_KEY_LENGTH, MAX_LEASE_S)
        assert await claims.renew("w" * MAX_KEY_LENGTH, [longest, "clé ✓ 軌跡"], 0.5) == {longest, "clé ✓ 軌跡"}
        many = [f"k{i}" for i in range(MAX_KEYS)]
        assert await claims.renew("w1", many, LONG) == set()
        assert await claims.holders(many) == {}

    async def test_a_claim_through_one_store_counts_in_another(self, claims: WorkClaims, other: WorkClaims) -> None:
        assert await claims.claim("k", "w1", LONG)
        assert not await other.claim("k", "w2", LONG)
        assert await held(other) == {"k": "w1"}
        await claims.release("w1", ["k"])
        assert await other.claim("k", "w2", LONG)
        assert await held(claims) == {"k": "w2"}

    async def test_two_stores_racing_for_the_same_keys_get_one_holder_each(self, claims: WorkClaims, other: WorkClaims) -> None:
        keys = [f"track:{i}" for i in range(50)]
        attempts = [(store, key, holder) for key in keys for store, holder in ((claims, "A"), (other, "B"))]
        random.shuffle(attempts)
        results = await asyncio.gather(*(store.claim(key, holder, LONG) for store, key, holder in attempts))
        granted: dict[str, list[str]] = {key: [] for key in keys}
        for (_, key, holder), won in zip(attempts, results, strict=True):
            if won:
                granted[key].append(holder)
        assert all(len(holders) == 1 for holders in granted.values()), granted
        assert await held(claims) == {key: holders[0] for key, holders in granted.items()}

    # -- workers ------------------------------------------------------------------------------

    async def test_announced_workers_are_listed_oldest_first(self, claims: WorkClaims, other: WorkClaims) -> None:
        assert await claims.workers() == []
        first = worker("z-first", segmenter=None, device=None)
        await claims.announce(first, LONG)
        await asyncio.sleep(0.05)  # a later announcement, whatever the clock's resolution
        second = worker("a-second", backend="sam2", trackers=["advanced"], device="cuda:1")
        await other.announce(second, LONG)
        assert await claims.workers() == [first, second]
        # Announcing again replaces what it says (its load), not its place.
        busier = worker("z-first", tracks=3, clicks=2)
        await claims.announce(busier, LONG)
        assert await other.workers() == [busier, second]

    async def test_a_worker_that_stops_announcing_expires(self, claims: WorkClaims) -> None:
        await claims.announce(worker("w1"), EXPIRES)
        await claims.announce(worker("w2"), LONG)
        await asyncio.sleep(AFTER_EXPIRY)
        assert [w.id for w in await claims.workers()] == ["w2"]
        await claims.announce(worker("w1"), LONG)  # back: live again, now the newest
        assert [w.id for w in await claims.workers()] == ["w2", "w1"]

    async def test_retire_drops_the_worker_and_releases_its_claims(self, claims: WorkClaims, other: WorkClaims) -> None:
        await claims.announce(worker("w1"), LONG)
        await claims.announce(worker("w2"), LONG)
        for key in ("a", "b"):
            assert await claims.claim(key, "w1", LONG)
        assert await claims.claim("c", "w2", LONG)
        await other.retire("w1")
        assert [w.id for w in await claims.workers()] == ["w2"]
        assert await held(claims) == {"c": "w2"}
        assert await claims.renew("w1", ["a", "b"], LONG) == set()
        assert await other.claim("a", "w2", LONG)
        await claims.retire("nobody")  # nothing to do

    # -- refusals -----------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "call",
        [
            ("claim", "", "w1", 1.0),
            ("claim", "k" * (MAX_KEY_LENGTH + 1), "w1", 1.0),
            ("claim", "a\x00b", "w1", 1.0),
            ("claim", "\ud800", "w1", 1.0),
            ("claim", 7, "w1", 1.0),
            ("claim", None, "w1", 1.0),
            ("claim", "k", "", 1.0),
            ("claim", "k", "w" * (MAX_KEY_LENGTH + 1), 1.0),
            ("claim", "k", b"w1", 1.0),
            ("claim", "k", "w1", 0),
            ("claim", "k", "w1", -1.0),
            ("claim", "k", "w1", MAX_LEASE_S + 0.001),
            ("claim", "k", "w1", math.nan),
            ("claim", "k", "w1", math.inf),
            ("claim", "k", "w1", True),
            ("claim", "k", "w1", "1"),
            ("renew", "w1", "held", 1.0),  # a string is not a collection of keys
            ("renew", "w1", ["held", ""], 1.0),  # one bad key refuses the whole call
            ("renew", "w1", ["held"], 0.0),
            ("renew", "w1", [f"k{i}" for i in range(MAX_KEYS + 1)], 1.0),
            ("renew", "", ["held"], 1.0),
            ("renew", "w1", 5, 1.0),
            ("release", "w1", "held"),
            ("release", "w1", ["held", None]),
            ("release", "", ["held"]),
            ("holders", "held"),
            ("holders", ["x" * (MAX_KEY_LENGTH + 1)]),
            ("announce", "not a worker", 1.0),
            ("announce", worker("w9"), 0),
            ("announce", worker(""), 1.0),
            ("announce", worker("w\x009"), 1.0),
            ("announce", worker("w9", pid="4242"), 1.0),
            ("announce", worker("w9", trackers="classical"), 1.0),
            ("announce", worker("w9", host="h" * 70_000), 1.0),
            ("retire", ""),
            ("retire", None),
        ],
        ids=lambda call: repr(call)[:50],
    )
    async def test_bad_arguments_are_refused_and_change_nothing(self, claims: WorkClaims, call: tuple[object, ...]) -> None:
        assert await claims.claim("held", "w1", LONG)
        await claims.announce(worker("w1"), LONG)
        before = (await held(claims), await claims.workers())
        name, *args = call
        with pytest.raises(ValueError):
            await getattr(claims, str(name))(*args)
        assert (await held(claims), await claims.workers()) == before

    async def test_a_closed_store_refuses_work_and_closes_twice(self, claims: WorkClaims, other: WorkClaims) -> None:
        assert await claims.claim("k", "w1", LONG)
        await claims.close()
        await claims.close()
        for name, args in [
            ("claim", ("j", "w1", 1.0)),
            ("renew", ("w1", ["k"], 1.0)),
            ("release", ("w1", ["k"])),
            ("holders", ()),
            ("holders", (["k"],)),
            ("announce", (worker("w1"), 1.0)),
            ("workers", ()),
            ("retire", ("w1",)),
        ]:
            with pytest.raises(ClaimsClosed):
                await getattr(claims, name)(*args)
        assert await held(other) == {"k": "w1"}  # the storage is still there for others


# -- several OS processes -------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import asyncio, json, random, sys

async def main(kind, target, holder):
    if kind == "sqlite":
        from masklog.server.sqlite_claims import SQLiteClaims
        claims = await SQLiteClaims.open(target)
    else:
        from masklog.server.postgres_claims import PostgresClaims
        claims = await PostgresClaims.open(target)
    keys = json.loads(sys.stdin.readline())
    print("ready", flush=True)
    sys.stdin.readline()  # go
    random.shuffle(keys)
    won = []
    for start in range(0, len(keys), 10):  # ten at a time, as a worker's loop would
        chunk = keys[start:start + 10]
        results = await asyncio.gather(*(claims.claim(key, holder, 60.0) for key in chunk))
        won += [key for key, ok in zip(chunk, results) if ok]
    await claims.close()
    print(json.dumps(won), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def claims_in_processes(kind: str, target: str, keys: list[str], holders: list[str]) -> dict[str, list[str]]:
    """Start one process per holder on the claims `target` (a SQLite path or a PostgreSQL DSN);
    once all have opened it, let them claim every key at once. Returns the keys each won."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, kind, target, holder], cwd=ROOT, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for holder in holders
    ]
    try:
        for child in children:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(keys) + "\n")
            child.stdin.flush()
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line == "ready\n", f"child failed: {line}{child.stderr.read() if child.stderr else ''}"
        for child in children:  # as close together as a parent can make it
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        won: dict[str, list[str]] = {}
        for holder, child in zip(holders, children, strict=True):
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err[-3000:]
            won[holder] = json.loads(out)
        return won
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def check_disjoint_and_complete(won: dict[str, list[str]], keys: list[str]) -> None:
    every = [key for keys_won in won.values() for key in keys_won]
    assert sorted(every) == sorted(keys), "every key granted exactly once"
