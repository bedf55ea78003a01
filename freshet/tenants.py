"""``freshet tenant delete T``: a tenant's shard dropped, and every document of it deleted the normal way.

1. With multi-tenancy, tenant T's Weaviate shard is dropped first: from then on no search finds a
   chunk of T (a search of T finds no shard: ``ok``, no hits).
2. Then an ``op: delete`` change event is published for every document of T the indexer's state
   holds live, and for every one only published so far, each one version above the highest known
   (:func:`workers.tenancy.tenant_deletes`; the state changelog and the changes topic are read as
   ``freshet verify`` reads them). The indexer applies them like any delete: its states and the
   query workers' applied views forget T's documents through the normal delivery path, and its
   deletes find no shard, which is no error. Without multi-tenancy the deletes alone remove T's
   chunks.

An event of T still in flight when the shard is dropped may make the shard again (Weaviate creates
a tenant's shard at its first write); the deletes, published after it and above its version, then
remove what it wrote. Stop T's producers first: an event published after this command is a new
document of T.
"""

from __future__ import annotations

from dataclasses import dataclass

from weaviate.exceptions import WeaviateBaseError

from freshet.errors import FreshetError, StoreUnavailableError
from freshet.publishing import publish_events
from freshet.settings import Settings
from freshet.verify import read_changes, read_states
from workers.tenancy import tenant_deletes, weaviate_tenant
from workers.weaviate_store import client_for


@dataclass(frozen=True)
class TenantDeletion:
    """What ``freshet tenant delete`` did."""

    tenant: str
    shard: str | None
    """The Weaviate shard name (None without multi-tenancy)."""
    shard_dropped: bool
    """The shard existed and was dropped."""
    documents: int
    """Delete events published."""


def drop_shard(settings: Settings, tenant: str) -> bool:
    """Drop ``tenant``'s shard of the collection; True when it existed."""
    try:
        client = client_for(settings)
    except WeaviateBaseError as exc:
        raise StoreUnavailableError(f"Weaviate at {settings.weaviate_url} is not reachable: {exc}") from exc
    shard = weaviate_tenant(tenant)
    try:
        tenants = client.collections.use(settings.collection).tenants
        existed = tenants.exists(shard)
        if existed:
            tenants.remove([shard])
        return existed
    except WeaviateBaseError as exc:
        raise FreshetError(f"cannot drop the shard {shard!r} of tenant {tenant!r} in collection "
                           f"{settings.collection!r}: {exc}") from exc
    finally:
        client.close()


def delete_tenant(settings: Settings, tenant: str, *, wait: bool, timeout: float) -> TenantDeletion:
    """Drop the tenant's shard (with multi-tenancy), then publish the deletes of its documents;
    with ``wait``, until the indexer has applied them all."""
    dropped = drop_shard(settings, tenant) if settings.multi_tenancy else False
    live = {key: st.version for key, st in read_states(settings).items() if not st.deleted}
    deletes = tenant_deletes(tenant, live, [se.event for se in read_changes(settings)])
    publish_events(settings, deletes, wait=wait, timeout=timeout, desc=f"deleting {tenant}")
    return TenantDeletion(tenant, weaviate_tenant(tenant) if settings.multi_tenancy else None, dropped, len(deletes))
