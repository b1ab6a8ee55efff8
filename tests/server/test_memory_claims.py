"""The in-memory claims (the embedded server's): the shared contract."""

from __future__ import annotations

from masklog.server.claims import MemoryClaims, WorkClaims
from tests.server.claims_contract import ClaimsContract


class TestMemoryClaims(ClaimsContract):
    async def open_claims(self) -> WorkClaims:
        return MemoryClaims()

    async def open_another(self, claims: WorkClaims) -> WorkClaims:
        assert isinstance(claims, MemoryClaims)
        return claims.another()


async def test_time_is_the_clock_it_was_given() -> None:
    now = [100.0]
    claims = MemoryClaims(clock=lambda: now[0])
    assert await claims.claim("k", "w1", 10)
    now[0] += 9.5
    assert not await claims.claim("k", "w2", 10)
    assert (await claims.holders())["k"].expires_in_s == 0.5
    now[0] += 0.5
    assert await claims.claim("k", "w2", 10)
