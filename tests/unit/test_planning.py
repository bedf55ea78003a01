from schemas.change import ChangeEvent
from workers.chunking import chunk_document
from workers.planning import DocState, Sourced, plan_change, props_hash, winning_event


def words(text: str) -> int:
    return len(text.split())


def ev(offset: int, tombstone: bool = False, **fields: object) -> Sourced:
    return Sourced(ChangeEvent.model_validate(fields), 0, offset, tombstone=tombstone)


def up(offset: int, version: int, content: str, **extra: object) -> Sourced:
    return ev(offset, doc_id="d", op="upsert", version=version, content=content, **extra)


PARAS = [f"Paragraph {i} says something long enough to stand alone as a chunk of its own text." for i in range(4)]
DOC = "\n\n".join(PARAS)


def planned(prev: DocState | None, se: Sourced):  # type: ignore[no-untyped-def]
    chunks = chunk_document(se.event.content or "", count_tokens=words, min_chars=10) if se.event.op == "upsert" else []
    return plan_change(prev, se, chunks)


def test_first_version_embeds_everything() -> None:
    p = planned(None, up(1, 1, DOC))
    assert (p.action, len(p.embed), p.delete, p.kept) == ("write", 4, [], 0)
    assert p.state.version == 1 and len(p.state.chunk_ids) == 4


def test_an_edit_embeds_only_the_changed_paragraph() -> None:
    first = planned(None, up(1, 1, DOC)).state
    edited = DOC.replace("Paragraph 2 says", "Paragraph 2 now says")
    p = planned(first, up(2, 2, edited))
    assert [c.text for _, c in p.embed] == [PARAS[2].replace("2 says", "2 now says")]
    assert p.delete == [first.chunk_ids[2]] and p.kept == 3 and p.update == []


def test_identical_republish_with_a_higher_version_does_nothing_but_advance() -> None:
    first = planned(None, up(1, 1, DOC)).state
    p = planned(first, up(2, 2, DOC))
    assert (p.action, p.embed, p.delete, p.update, p.state.version) == ("noop", [], [], [], 2)


def test_metadata_only_change_updates_properties_without_embedding() -> None:
    first = planned(None, up(1, 1, DOC, metadata={"lang": "en"})).state
    p = planned(first, up(2, 2, DOC, metadata={"lang": "fr"}))
    assert p.embed == [] and len(p.update) == 4 and p.delete == []
    assert p.state.props_hash == props_hash(up(2, 2, DOC, metadata={"lang": "fr"}).event)


def test_moving_a_section_re_embeds_nothing() -> None:
    first = planned(None, up(1, 1, DOC)).state
    moved = "\n\n".join([PARAS[2], PARAS[0], PARAS[1], PARAS[3]])
    p = planned(first, up(2, 2, moved))
    assert p.embed == [] and p.delete == [] and sorted(p.state.chunk_ids) == sorted(first.chunk_ids)


def test_delete_removes_every_chunk_and_recreate_needs_a_higher_version() -> None:
    first = planned(None, up(1, 1, DOC)).state
    gone = planned(first, ev(2, doc_id="d", op="delete", version=2))
    assert gone.action == "delete" and gone.delete == first.chunk_ids and gone.state.deleted
    winner, stale = winning_event(gone.state, [up(3, 2, DOC)])
    assert winner is None and stale == 1
    again = planned(gone.state, up(4, 3, DOC))
    assert again.action == "write" and len(again.embed) == 4


def test_stale_and_out_of_order_versions_are_skipped() -> None:
    state = DocState(version=5)
    winner, stale = winning_event(state, [up(1, 4, "a"), up(2, 5, "b"), up(3, 7, "c"), up(4, 6, "d")])
    assert winner is not None and winner.event.content == "c" and stale == 3


def test_a_tombstone_always_applies_and_keeps_the_version() -> None:
    first = planned(None, up(1, 3, DOC)).state
    tomb = ev(2, tombstone=True, doc_id="d", op="delete", version=0)
    winner, stale = winning_event(first, [tomb])
    assert winner is tomb and stale == 0
    p = planned(first, tomb)
    assert p.state.version == 3 and p.state.deleted and len(p.delete) == 4


def test_renaming_a_heading_embeds_one_chunk_and_updates_the_paths_of_the_others() -> None:
    doc = "# A\n\n" + PARAS[0] + "\n\n" + PARAS[1] + "\n\n## B\n\n" + PARAS[2] + "\n\n" + PARAS[3]
    first = planned(None, up(1, 1, doc)).state
    p = planned(first, up(2, 2, doc.replace("# A", "# A2")))
    assert [c.text.split("\n")[0] for _, c in p.embed] == ["# A2"]
    assert len(p.update) == 3 and len(p.delete) == 1


def test_a_replayed_tombstone_does_not_delete_a_document_re_created_after_it() -> None:
    # upsert v1 @10, tombstone @11, upsert v2 @12 applied; then offsets 11-12 are handled again
    tomb = ev(11, tombstone=True, doc_id="d", op="delete", version=0)
    state = planned(planned(planned(None, up(10, 1, DOC)).state, tomb).state, up(12, 2, DOC)).state
    assert (state.version, state.deleted, state.offset) == (2, False, 12)
    winner, stale = winning_event(state, [tomb, up(12, 2, DOC)])
    assert winner is None and stale == 2
