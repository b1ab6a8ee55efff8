"""The click queue: requesters take turns, each one's prompts in order, the newest prompt on a
cell supersedes a waiting one (pure: no models, no server)."""

from __future__ import annotations

from masklog.inference.click_queue import ClickQueue


def drain(queue: ClickQueue[str]) -> list[str]:
    answered = []
    while (prompt := queue.pop()) is not None:
        answered.append(prompt)
    return answered


def test_a_single_click_waits_for_at_most_one_click_of_a_user_with_fifty_queued() -> None:
    queue: ClickQueue[str] = ClickQueue()
    for index in range(50):
        queue.push("alice", ("a", index), f"alice-{index}")
    queue.push("bob", ("b", 0), "bob-0")
    assert drain(queue)[:2] == ["alice-0", "bob-0"]


def test_a_click_sent_while_another_users_queue_is_being_worked_off_is_next() -> None:
    queue: ClickQueue[str] = ClickQueue()
    for index in range(50):
        queue.push("alice", ("a", index), f"alice-{index}")
    assert [queue.pop(), queue.pop()] == ["alice-0", "alice-1"]  # alice-1 is being answered now
    queue.push("bob", ("b", 0), "bob-0")
    assert queue.pop() == "bob-0"
    assert queue.pop() == "alice-2"


def test_every_waiting_user_gets_one_turn_before_anyone_gets_a_second() -> None:
    queue: ClickQueue[str] = ClickQueue()
    for index in range(50):
        queue.push("alice", ("a", index), f"alice-{index}")
    assert queue.pop() == "alice-0"
    for user in ("bob", "carol", "dave"):
        queue.push(user, (user, 0), f"{user}-0")
        queue.push(user, (user, 1), f"{user}-1")
    answered = drain(queue)
    assert answered[:8] == ["bob-0", "carol-0", "dave-0", "alice-1", "bob-1", "carol-1", "dave-1", "alice-2"]
    assert answered[8:] == [f"alice-{index}" for index in range(3, 50)]


def test_each_users_prompts_are_answered_in_the_order_sent() -> None:
    queue: ClickQueue[str] = ClickQueue()
    for index in range(5):
        queue.push("alice", ("a", index), f"alice-{index}")
        queue.push("bob", ("b", index), f"bob-{index}")
    answered = drain(queue)
    assert [p for p in answered if p.startswith("alice")] == [f"alice-{index}" for index in range(5)]
    assert [p for p in answered if p.startswith("bob")] == [f"bob-{index}" for index in range(5)]


def test_a_newer_prompt_on_the_same_cell_supersedes_the_waiting_one() -> None:
    queue: ClickQueue[str] = ClickQueue()
    queue.push("alice", ("car", 3), "first")
    queue.push("alice", ("car", 4), "other frame")
    queue.push("alice", ("car", 3), "second")
    assert len(queue) == 2
    assert drain(queue) == ["other frame", "second"]  # the newest goes after her other prompts, as sent


def test_another_users_prompt_on_the_same_cell_supersedes_it_too() -> None:
    queue: ClickQueue[str] = ClickQueue()
    queue.push("alice", ("car", 3), "alice's")
    queue.push("bob", ("car", 3), "bob's")
    assert drain(queue) == ["bob's"]
    assert not queue and queue.pop() is None


def test_a_user_whose_queue_emptied_joins_the_turn_again() -> None:
    queue: ClickQueue[str] = ClickQueue()
    queue.push("alice", ("a", 0), "alice-0")
    queue.push("alice", ("a", 1), "alice-1")
    queue.push("bob", ("b", 0), "bob-0")
    assert queue.pop() == "alice-0"
    assert queue.pop() == "bob-0"
    queue.push("bob", ("b", 1), "bob-1")  # bob was served last: alice, who waits, goes first
    assert drain(queue) == ["alice-1", "bob-1"]
