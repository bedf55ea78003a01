"""Tenants as a boundary: Weaviate shard names, which tenants a query worker serves, and the deletes
that forget a tenant. Pure.

With ``FRESHET_MULTI_TENANCY=true`` every tenant's chunks live in a Weaviate tenant shard of their
own, and every read and write names that shard (:mod:`workers.weaviate_store`), so a search can
never reach another tenant's chunks, whatever its filters say.

Shard names
    Weaviate allows ``[A-Za-z0-9_-]{1,64}`` (case-sensitive); a freshet tenant may hold any
    character but controls, up to 128. :func:`weaviate_tenant` keeps a name Weaviate allows as it
    is, and maps any other to :data:`ENCODED_PREFIX` and 62 hex digits of its SHA-256. A kept name
    never starts with that prefix (a valid name that does is encoded too), so no kept name equals
    an encoded one, and two encoded ones are equal only if SHA-256 collides in 248 bits: the map is
    injective. It is also fixed forever: a shard's name must not change under a running index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from freshet.errors import InvalidEventError
from schemas.change import MAX_VERSION, ChangeEvent, split_key
from schemas.search import DocFence, SearchRequest

#: What Weaviate accepts as a tenant name.
WEAVIATE_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The start of every encoded name; a name with it is never kept as it is.
ENCODED_PREFIX = "--"
_DIGEST_CHARS = 64 - len(ENCODED_PREFIX)

#: Error code (reply) and dead-letter reason: a search or an event without a tenant where one is required.
TENANT_REQUIRED = "tenant_required"
#: Error code of a search for a tenant this query worker does not serve.
TENANT_NOT_ALLOWED = "tenant_not_allowed"


def weaviate_tenant(tenant: str) -> str:
    """The Weaviate tenant (shard) name of freshet tenant ``tenant`` (deterministic, injective)."""
    if WEAVIATE_TENANT.fullmatch(tenant) and not tenant.startswith(ENCODED_PREFIX):
        return tenant
    return ENCODED_PREFIX + hashlib.sha256(tenant.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_CHARS]


def parse_tenants(spec: str) -> frozenset[str] | None:
    """``FRESHET_QUERY_TENANTS`` (comma-separated, blanks around names ignored) as a set; None when
    empty (any tenant)."""
    names = frozenset(filter(None, (part.strip() for part in spec.split(","))))
    return names or None


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """Which searches a query worker answers: ``required`` (multi-tenancy: every search names its
    tenant), ``allowed`` (the tenants it serves; None: any)."""

    required: bool = False
    allowed: frozenset[str] | None = None

    def serves(self, tenant: str | None) -> bool:
        """Whether a search for ``tenant`` may run here (the probes ask it too)."""
        if tenant is None:
            return not self.required and self.allowed is None
        return self.allowed is None or tenant in self.allowed

    def check(self, req: SearchRequest) -> None:
        """Raise :class:`InvalidEventError` (``tenant_required``, ``tenant_not_allowed``) unless
        ``req`` may run here. The message never lists the tenants served: it goes to the asker."""
        if req.tenant is None and not self.serves(None):
            why = ("this query worker runs with FRESHET_MULTI_TENANCY=true" if self.required
                   else "this query worker serves only some tenants (FRESHET_QUERY_TENANTS)")
            raise InvalidEventError(TENANT_REQUIRED, f"{why}: a search must name its tenant (the request's "
                                                     "'tenant' field)")
        if not self.serves(req.tenant):
            raise InvalidEventError(TENANT_NOT_ALLOWED, f"tenant {req.tenant!r} is not served by this query worker "
                                                        "(FRESHET_QUERY_TENANTS)")
        fence = req.consistency
        if isinstance(fence, DocFence) and fence.tenant != req.tenant and (self.required or self.allowed is not None):
            raise InvalidEventError(TENANT_NOT_ALLOWED, f"the consistency fence names tenant {fence.tenant!r}, "
                                                        f"not the request's {req.tenant!r}")


def check_event_tenant(event: ChangeEvent, *, required: bool) -> None:
    """Raise :class:`InvalidEventError` (``tenant_required``) for an event without a tenant where
    every document belongs to one (multi-tenancy): it could go to no tenant's shard."""
    if required and event.tenant is None:
        raise InvalidEventError(TENANT_REQUIRED, f"document {event.doc_id[:200]!r} has no tenant, and the indexer "
                                "runs with FRESHET_MULTI_TENANCY=true: publish it with a 'tenant' (keyed "
                                "'tenant<0x1f>doc_id')")


def tenant_deletes(tenant: str, live: Mapping[str, int], published: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    """The ``op: delete`` events that forget every document of ``tenant``: one per document the
    indexer's state holds live (``live``: document key -> version), each at one above the highest
    version known for it (its state's, or a higher one already published and not yet applied).
    Documents only published so far (none applied yet) are deleted too, so an event in flight
    cannot bring one back. Ordered by document key."""
    versions = {key: v for key, v in live.items() if split_key(key)[0] == tenant}
    pending: dict[str, int] = {}
    for ev in published:
        if ev.tenant == tenant:
            pending[ev.key] = max(ev.version, pending.get(ev.key, -1))
            if ev.op == "upsert":
                versions.setdefault(ev.key, -1)
    # at the very last version (2**63 - 1) a delete could only be stale: it is sent at that version
    return [ChangeEvent(doc_id=split_key(key)[1], tenant=tenant, op="delete",
                        version=min(max(versions[key], pending.get(key, -1)) + 1, MAX_VERSION))
            for key in sorted(versions)]
