import asyncio

import pytest

from freshet.errors import InvalidEventError
from schemas.change import ChangeEvent
from tests.unit.fakes import DictStore, WordEmbedder
from workers.chunking import Context
from workers.embedding import EmbeddingCache
from workers.ids import chunk_id
from workers.indexing import Indexer
from workers.planning import DocState, Sourced
from workers.stats import IndexerStats

PARAS = [f"Paragraph {i} tells a story. " + "It is long enough to be a chunk of its own, nothing more. " * 4
         for i in range(3)]
DOC = "# Title\n\n" + "\n\n".join(PARAS)


def sourced(offset: int, **fields: object) -> Sourced:
    return Sourced(ChangeEvent.model_validate(fields), 0, offset)


class Harness:
    def __init__(self) -> None:
        self.store, self.model, self.stats = DictStore(), WordEmbedder(), IndexerStats()
        self.indexer = Indexer(self.model, self.store, EmbeddingCache(100), self.stats)
        self.states: dict[str, DocState | None] = {}

    def apply(self, *events: Sourced, finish: bool = True) -> None:
        """Apply, then (as the agent does once the applied records are out) delete the old chunks."""
        applied = asyncio.run(self.indexer.apply(list(events), self.states))
        for a in applied:
            self.states[a.key] = a.state
        if finish:
            doomed = [(a.key, a.state) for a in applied if a.state.pending_delete or a.state.pending_sweep]
            for key, state in asyncio.run(self.indexer.finish(doomed)):
                self.states[key] = state


def test_chunk_ids_are_stable_and_tell_repeats_apart() -> None:
    a = chunk_id("t", "d", "h", 0)
    assert a == chunk_id("t", "d", "h", 0)
    assert len({a, chunk_id("t", "d", "h", 1), chunk_id(None, "d", "h", 0), chunk_id("t", "e", "h", 0)}) == 4


def test_edit_replay_and_delete() -> None:
    h = Harness()
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC))
    assert len(h.store.objects) == 3 and h.stats.chunks_embedded == 3
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC))  # replay: stale, nothing happens
    assert h.stats.stale_skipped == 1 and h.stats.chunks_embedded == 3
    h.apply(sourced(2, doc_id="d", op="upsert", version=2, content=DOC.replace("Paragraph 1", "Paragraph one")))
    assert h.stats.chunks_embedded == 4 and len(h.store.objects) == 3 and h.stats.chunks_deleted == 1
    h.apply(sourced(3, doc_id="d", op="delete", version=3))
    assert h.store.objects == {}


def test_old_chunks_go_only_after_the_applied_record_and_a_crash_in_between_is_repaired() -> None:
    h = Harness()
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC))
    h.apply(sourced(2, doc_id="d", op="upsert", version=2, content=DOC.replace("Paragraph 1", "Paragraph one")),
            finish=False)  # written and announced, then the worker dies before deleting
    state = h.states["d"]
    assert state is not None and len(state.pending_delete) == 1 and len(h.store.objects) == 4
    h.apply(sourced(2, doc_id="d", op="upsert", version=2, content="replayed"))  # a stale replay repairs it
    assert len(h.store.objects) == 3 and h.states["d"] is not None and not h.states["d"].pending_delete


def test_reverting_an_edit_takes_the_vector_from_the_cache() -> None:
    h = Harness()
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC))
    h.apply(sourced(2, doc_id="d", op="upsert", version=2, content=DOC.replace("Paragraph 1", "Paragraph one")))
    h.apply(sourced(3, doc_id="d", op="upsert", version=3, content=DOC))
    assert h.stats.chunks_embedded == 4  # the revert cost no embedding
    assert len(h.store.objects) == 3


def test_several_versions_in_one_batch_cost_only_the_last() -> None:
    h = Harness()
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content="first " * 20),
            sourced(2, doc_id="d", op="upsert", version=2, content=DOC))
    assert h.stats.chunks_embedded == 3 and h.states["d"] is not None and h.states["d"].version == 2


def test_metadata_change_updates_without_embedding() -> None:
    h = Harness()
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC, metadata={"lang": "en"}))
    h.apply(sourced(2, doc_id="d", op="upsert", version=2, content=DOC, metadata={"lang": "fr"}))
    assert h.stats.chunks_embedded == 3 and h.store.property_updates == 3
    assert {r.metadata["lang"] for r in h.store.objects.values()} == {"fr"}


def test_a_tombstone_batched_after_a_higher_version_keeps_that_version() -> None:
    """[v2, tombstone] in one batch, then a stale v1: the document stays deleted (the chaos tier
    found a deleted document brought back because the batch's v2 was forgotten)."""
    h = Harness()
    tomb = Sourced(ChangeEvent(doc_id="d", op="delete", version=0), 0, 2, tombstone=True)
    h.apply(sourced(1, doc_id="d", op="upsert", version=2, content=DOC), tomb)
    state = h.states["d"]
    assert state is not None and state.deleted and state.version == 2
    h.apply(sourced(3, doc_id="d", op="upsert", version=1, content=DOC))
    assert h.store.objects == {} and h.stats.stale_skipped == 1


def test_a_document_of_too_many_chunks_is_refused_before_anything_is_written() -> None:
    h = Harness()
    h.indexer = Indexer(h.model, h.store, EmbeddingCache(100), h.stats, max_chunks=2)
    h.apply(sourced(1, doc_id="small", op="upsert", version=1, content=PARAS[0]))
    with pytest.raises(InvalidEventError) as err:
        h.apply(sourced(2, doc_id="d", op="upsert", version=1, content=DOC))  # 3 chunks
    assert err.value.reason == "too_many_chunks"
    assert {o.doc_id for o in h.store.objects.values()} == {"small"} and "d" not in h.states


def test_a_title_in_the_embedded_context_re_embeds_the_document_when_it_changes() -> None:
    h = Harness()
    h.indexer = Indexer(h.model, h.store, EmbeddingCache(100), h.stats, context=Context(title="all"))
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC, title="Stories"))
    assert h.stats.chunks_embedded == 3
    assert [t.split("\n\n", 1)[0] for t in h.model.embedded] == ["Stories"] * 3
    h.apply(sourced(2, doc_id="d", op="upsert", version=2, content=DOC, title="Tales"))  # the title alone
    assert h.stats.chunks_embedded == 6 and len(h.store.objects) == 3

    plain = Harness()  # without it, a new title is a property update: nothing is embedded again
    plain.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC, title="Stories"))
    plain.apply(sourced(2, doc_id="d", op="upsert", version=2, content=DOC, title="Tales"))
    assert plain.stats.chunks_embedded == 3


def test_a_version_written_by_a_batch_that_died_before_its_state_leaves_no_chunk_behind() -> None:
    h = Harness()
    h.apply(sourced(1, doc_id="d", op="upsert", version=1, content=DOC))
    v2 = sourced(2, doc_id="d", op="upsert", version=2, content=DOC.replace("Paragraph 1", "Paragraph two"))
    asyncio.run(h.indexer.apply([v2], h.states))  # written, then kill -9: its state is never stored
    assert len(h.store.objects) == 4
    v3 = sourced(3, doc_id="d", op="upsert", version=3, content=DOC.replace("Paragraph 1", "Paragraph three"))
    h.apply(v2, v3)  # the replay reads both: version 3 wins; version 2's chunk is in no state
    state = h.states["d"]
    assert state is not None and sorted(h.store.objects) == sorted(state.chunk_ids)
    assert h.stats.chunks_embedded == 5  # version 2 cost nothing more in the replay
