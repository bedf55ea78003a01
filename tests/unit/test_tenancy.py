"""Tenants as a boundary, the pure parts: shard names, which searches a worker answers, tenant deletes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freshet.errors import InvalidEventError
from freshet.settings import Settings
from schemas.applied import AppliedRecord
from schemas.change import MAX_VERSION, ChangeEvent
from schemas.search import DocFence, SearchRequest
from streams.query import admit
from tests.unit.fakes import DictStore, WordEmbedder
from workers.applied_view import AppliedView
from workers.probes import Probes
from workers.search import Searcher
from workers.stats import QueryStats
from workers.store import StoredHit, StoreQuery
from workers.tenancy import (
    ENCODED_PREFIX,
    WEAVIATE_TENANT,
    TenantPolicy,
    check_event_tenant,
    parse_tenants,
    tenant_deletes,
    weaviate_tenant,
)

#: Tenants as the change contract allows them: no control characters, 1..128 characters.
TENANTS = st.text(st.characters(blacklist_categories=("Cc",), blacklist_characters="\x7f"), min_size=1, max_size=128)


@pytest.mark.parametrize("name", ["acme", "Acme", "ACME", "t-1", "_x", "a" * 64, "0", "-a", "a--b"])
def test_a_name_weaviate_allows_is_kept_as_it_is(name: str) -> None:
    assert weaviate_tenant(name) == name


@pytest.mark.parametrize("name", ["a b", "a.b", "ü", "acme/eu", "a" * 65, "x" * 128, "--abc", "--" + "0" * 62,
                                  "tenant:1", "日本", "\ud800"])
def test_any_other_name_is_encoded_under_the_prefix_as_a_valid_name(name: str) -> None:
    shard = weaviate_tenant(name)
    assert shard.startswith(ENCODED_PREFIX) and len(shard) == 64 and WEAVIATE_TENANT.fullmatch(shard)
    assert weaviate_tenant(name) == shard  # deterministic


def test_case_and_near_names_stay_apart() -> None:
    names = ["acme", "Acme", "acme ", " acme", "acme.", "acme-", "--acme", "acme/x", "acme/X"]
    assert len({weaviate_tenant(n) for n in names}) == len(names)


@given(st.lists(TENANTS, min_size=2, max_size=30, unique=True))
def test_the_map_is_injective_and_every_shard_name_valid(names: list[str]) -> None:
    shards = [weaviate_tenant(n) for n in names]
    assert len(set(shards)) == len(names)
    assert all(WEAVIATE_TENANT.fullmatch(s) for s in shards)


@given(TENANTS)
def test_a_kept_name_never_looks_encoded(name: str) -> None:
    shard = weaviate_tenant(name)
    assert (shard == name) != shard.startswith(ENCODED_PREFIX)


def test_query_tenants_parse_to_a_set_or_none() -> None:
    assert parse_tenants("") is None and parse_tenants(" , ") is None
    assert parse_tenants("acme, globex ,acme") == frozenset({"acme", "globex"})
    assert Settings(query_tenants="a,b").tenant_policy == TenantPolicy(required=False, allowed=frozenset({"a", "b"}))
    assert Settings(multi_tenancy=True).tenant_policy == TenantPolicy(required=True, allowed=None)


def req(tenant: str | None = None, **fields: object) -> SearchRequest:
    return SearchRequest.model_validate({"request_id": "r", "query": "q", "tenant": tenant, **fields})


def refusal(policy: TenantPolicy, request: SearchRequest) -> str | None:
    try:
        policy.check(request)
    except InvalidEventError as exc:
        return exc.reason
    return None


def test_without_tenancy_or_a_restriction_every_search_runs() -> None:
    policy = TenantPolicy()
    assert refusal(policy, req()) is None and refusal(policy, req("acme")) is None
    assert refusal(policy, req("acme", consistency={"doc_id": "d", "tenant": "other", "min_version": 1})) is None


def test_multi_tenancy_requires_a_tenant() -> None:
    policy = TenantPolicy(required=True)
    assert refusal(policy, req()) == "tenant_required"
    assert refusal(policy, req("acme")) is None
    with pytest.raises(InvalidEventError, match="FRESHET_MULTI_TENANCY"):
        policy.check(req())


@pytest.mark.parametrize("required", [False, True])
def test_a_restricted_worker_refuses_other_tenants_and_none_without_naming_its_own(required: bool) -> None:
    policy = TenantPolicy(required=required, allowed=frozenset({"acme", "globex"}))
    assert refusal(policy, req("acme")) is None and refusal(policy, req("globex")) is None
    assert refusal(policy, req("initech")) == "tenant_not_allowed"
    assert refusal(policy, req()) == "tenant_required"
    with pytest.raises(InvalidEventError) as err:
        policy.check(req("initech"))
    assert "initech" in str(err.value) and "acme" not in str(err.value) and "globex" not in str(err.value)
    assert policy.serves("acme") and not policy.serves("initech") and not policy.serves(None)


def test_a_fence_on_another_tenants_document_is_refused_where_tenants_are_a_boundary() -> None:
    fence = DocFence(doc_id="d", tenant="globex", min_version=1)
    for policy in (TenantPolicy(required=True), TenantPolicy(allowed=frozenset({"acme", "globex"}))):
        assert refusal(policy, req("acme", consistency=fence)) == "tenant_not_allowed"
        assert refusal(policy, req("acme", consistency={"doc_id": "d", "tenant": "acme", "min_version": 1})) is None
        assert refusal(policy, req("acme", consistency=[{"partition": 0, "offset": 3}])) is None


def test_an_event_without_a_tenant_is_refused_only_under_multi_tenancy() -> None:
    event = ChangeEvent(doc_id="a.md", op="upsert", version=1, content="x")
    check_event_tenant(event, required=False)
    check_event_tenant(event.model_copy(update={"tenant": "acme"}), required=True)
    with pytest.raises(InvalidEventError) as err:
        check_event_tenant(event, required=True)
    assert err.value.reason == "tenant_required" and "a.md" in str(err.value)


def ev(doc_id: str, version: int, tenant: str | None = "acme", op: str = "upsert") -> ChangeEvent:
    return ChangeEvent.model_validate({"doc_id": doc_id, "tenant": tenant, "op": op, "version": version,
                                       "content": "x" if op == "upsert" else None})


def test_tenant_deletes_go_one_above_the_highest_known_version_of_each_live_document() -> None:
    live = {"acme\x1fa.md": 3, "acme\x1fb.md": 7, "globex\x1fa.md": 9, "a.md": 4}
    published = [ev("a.md", 3), ev("b.md", 9), ev("c.md", 2), ev("a.md", 12, tenant="globex"),
                 ev("d.md", 5), ev("d.md", 6, op="delete"), ev("a.md", 5, tenant=None)]
    deletes = tenant_deletes("acme", live, published)
    assert [(d.doc_id, d.tenant, d.op, d.version) for d in deletes] == [
        ("a.md", "acme", "delete", 4),   # its state's version + 1
        ("b.md", "acme", "delete", 10),  # version 9 is published, not applied yet: above it
        ("c.md", "acme", "delete", 3),   # only published so far: deleted too, so it cannot come back
        ("d.md", "acme", "delete", 7),   # published and deleted, not applied: a delete above both is harmless
    ]
    assert tenant_deletes("initech", live, published) == []


def test_a_tenant_delete_at_the_last_version_stays_a_valid_event() -> None:
    (delete,) = tenant_deletes("acme", {"acme\x1fa.md": MAX_VERSION}, [])
    assert delete.version == MAX_VERSION


class MixedStore(DictStore):
    """A store that (wrongly) answers with every tenant's chunk, and holds every tenant's vectors."""

    async def search(self, query: StoreQuery) -> list[StoredHit]:
        self.queries.append(query)
        return [StoredHit(id=f"{t}-1", score=1.0, properties={"doc_id": "a.md", "tenant": t})
                for t in ("acme", "globex")]

    async def vectors(self, max_count: int, *, tenant: str | None = None) -> dict[str, list[float]] | None:
        self.vector_tenants.append(tenant)
        return {}

    async def fetch(self, ids: Sequence[str], *, tenant: str | None = None,
                    with_vectors: bool = False) -> list[StoredHit]:
        self.fetched.append(tenant)
        return []

    def __init__(self) -> None:
        super().__init__()
        self.vector_tenants: list[str | None] = []
        self.fetched: list[str | None] = []


def applied(tenant: str) -> AppliedRecord:
    return AppliedRecord(doc_id="a.md", tenant=tenant, version=1, op="upsert", chunk_ids=[f"{tenant}-1"],
                         source_partition=0, source_offset=0, applied_at=datetime.now(UTC))


def searcher_of(store: DictStore, policy: TenantPolicy) -> Searcher:
    view = AppliedView()
    for t in ("acme", "globex", "initech"):
        view.apply(applied(t))
    return Searcher(WordEmbedder(), store, view, QueryStats(), metadata_schema={}, tenancy=policy)


def test_the_searcher_refuses_by_its_policy_and_never_admits_another_tenants_hit() -> None:
    store = MixedStore()
    searcher = searcher_of(store, TenantPolicy(required=True))
    with pytest.raises(InvalidEventError, match="must name its tenant"):
        admit(b'{"request_id": "r", "query": "q"}', searcher)
    reply = asyncio.run(searcher.search(admit(b'{"request_id": "r", "query": "q", "tenant": "acme"}', searcher)))
    assert [(h.chunk_id, h.tenant) for h in reply.hits] == [("acme-1", "acme")]
    assert store.queries[0].tenant == "acme"


def test_probes_touch_only_the_shards_of_served_tenants() -> None:
    store = MixedStore()
    searcher = searcher_of(store, TenantPolicy(required=True, allowed=frozenset({"globex"})))
    probes = Probes(searcher)
    for _ in range(5):
        asyncio.run(probes.ann_recall())
    assert store.vector_tenants == ["globex"] * 5
    searcher.view.track_recent = True
    for t in ("acme", "globex", "initech"):
        searcher.view.apply(applied(t).model_copy(update={"version": 2, "chunk_ids": [f"{t}-2"]}))
    asyncio.run(probes.searchability())
    assert store.fetched == ["globex"]
    unrestricted = MixedStore()
    asyncio.run(Probes(searcher_of(unrestricted, TenantPolicy())).ann_recall())
    assert unrestricted.vector_tenants == [None]  # one collection, one index: every chunk, as before
