"""Object names (issue 14, point 5): set at creation or by `object_renamed`, shared by everyone,
undoable, kept across a reclass; old logs (no names) fold as before."""

import json
from pathlib import Path

import pytest

from masklog.domain import events as ev
from masklog.domain.decide import DomainError, ErrorCode, Redo, Undo
from masklog.domain.limits import MAX_NAME_CHARS
from masklog.domain.state import fold
from tests.domain.builders import ALICE, BOB, project_log

FIXTURES = Path(__file__).parent / "fixtures"


def refused(log, actor, command, code, text=""):
    before = len(log.events)
    with pytest.raises(DomainError) as caught:
        log.do(actor, command)
    assert caught.value.code == code and text in caught.value.message
    assert len(log.events) == before


def test_a_name_given_at_creation_and_changed_by_a_rename():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox", name="  front car "))
    assert log.state.objects["a"].name == "front car", "stored trimmed"
    log.do(BOB, ev.ObjectRenamed(object="a", name="rear car"))
    assert log.state.objects["a"].name == "rear car"
    log.do(BOB, ev.ObjectReclassed(object="a", class_id="bbox2"))
    assert log.state.objects["a"].name == "rear car" and log.state.objects["a"].class_id == "bbox2"
    log.do(ALICE, ev.ObjectRenamed(object="a", name="   "))
    assert log.state.objects["a"].name is None, "a blank name clears it"
    assert fold(ev.decode_event(ev.encode(e)) for e in log.events) == log.state


def test_a_rename_is_one_undo_step_of_its_author():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox"))
    log.do(BOB, ev.ObjectRenamed(object="a", name="car"))
    log.do(BOB, ev.ObjectRenamed(object="a", name="truck"))
    log.do(BOB, Undo(media="m1"))
    assert log.state.objects["a"].name == "car"
    log.do(BOB, Undo(media="m1"))
    assert log.state.objects["a"].name is None
    log.do(BOB, Redo(media="m1"))
    assert log.state.objects["a"].name == "car"
    # Alice's undo is of her own action (the creation), which a later rename conflicts with.
    undone = log.do(ALICE, Undo(media="m1"))
    assert isinstance(undone.body, ev.Undone) and undone.body.conflicts == 1 and "a" in log.state.objects


def test_bad_renames_change_nothing():
    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox", name="car"))
    refused(log, ALICE, ev.ObjectRenamed(object="nope", name="x"), ErrorCode.UNKNOWN, "unknown object 'nope'")
    refused(log, ALICE, ev.ObjectRenamed(object="a", name=" car"), ErrorCode.INVALID, "already named 'car'")
    refused(log, ALICE, ev.ObjectCreated(object="b", media="m1", class_id="bbox", name=" "), ErrorCode.INVALID, "visible character")
    log.do(ALICE, ev.ObjectDeleted(object="a"))
    refused(log, ALICE, ev.ObjectRenamed(object="a", name="x"), ErrorCode.UNKNOWN)


def test_names_are_bounded_like_other_names():
    ok = ev.decode_body(ev.encode(ev.ObjectRenamed(object="a", name="n" * MAX_NAME_CHARS)))
    assert isinstance(ok, ev.ObjectRenamed)
    with pytest.raises(ev.SchemaError):
        ev.decode_body(ev.encode(ev.ObjectRenamed(object="a", name="n" * (MAX_NAME_CHARS + 1))))
    with pytest.raises(ev.SchemaError):
        ev.decode_body(b'{"type": "object_created", "object": "a", "media": "m1", "class_id": "c", "name": ""}')
    assert ev.decode_body(b'{"type": "object_renamed", "object": "a", "name": ""}') == ev.ObjectRenamed(object="a", name="")


def test_unnamed_objects_encode_as_before_names():
    created = ev.ObjectCreated(object="a", media="m1", class_id="c")
    assert ev.encode(created) == b'{"type":"object_created","object":"a","media":"m1","class_id":"c"}'
    info = ev.ObjectInfo(media="m1", class_id="c", created_by="user:ann")
    assert ev.encode(info) == b'{"media":"m1","class_id":"c","created_by":"user:ann"}'


def test_the_first_wave_log_folds_with_every_object_unnamed():
    rows = (FIXTURES / "first_wave_log.jsonl").read_bytes().splitlines()
    state = fold(ev.decode_events([r for r in rows if r.strip()]))
    assert state.objects and all(info.name is None for info in state.objects.values())


def test_names_go_out_in_a_coco_export_and_come_back_in_an_import():
    from masklog.domain import coco
    from masklog.domain.shapes import BBox

    log = project_log()
    log.do(ALICE, ev.ObjectCreated(object="a", media="m1", class_id="bbox", name="lead car"))
    log.do(ALICE, ev.ObjectCreated(object="b", media="m1", class_id="bbox"))
    for oid, x in (("a", 2), ("b", 20)):
        log.do(ALICE, ev.LabelSaved(object=oid, frame=3, shape=BBox(x=x, y=2, w=5, h=5), source=ev.Source.MANUAL))
    media = log.state.media["m1"]
    classes = [c for c in log.state.classes.values() if c.project == "p1"]
    selection = coco.Selection()
    data = b"".join(coco.export_chunks(classes, coco.select(log.state, [media], selection), selection, seq=log.state.seq))
    annotations = {a["masklog"]["object"]: a for a in json.loads(data)["annotations"]}
    assert annotations["a"]["attributes"] == {"name": "lead car"} and "attributes" not in annotations["b"]

    taken: set[str] = set()

    def new_id(hint: str) -> str:
        candidate = f"{hint}-copy"
        taken.add(candidate)
        return candidate

    plan = coco.plan_import(log.state, media, data, new_id)
    assert {o.object: o.name for o in plan.objects} == {"a-copy": "lead car", "b-copy": None}
    digest = coco.import_digest(data)
    ids = coco.import_event_ids(plan, "m1", digest)
    assert len(ids) == len(set(ids)) == len(plan.commands) and ids == coco.import_event_ids(plan, "m1", digest)
    assert all(ev.is_derived_event_id(i) for i in ids)
    first_origin = plan.origins["a-copy"]
    rest = coco.without_imported(plan, {first_origin})
    assert [o.object for o in rest.objects] == ["b-copy"] and [s.object for s in rest.labels] == ["b-copy"]
    assert set(coco.import_event_ids(rest, "m1", digest)) < set(ids), "the same ids for what is left"
