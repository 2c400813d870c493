"""Tenant quotas as the SDK and CLI take them: names and numbers checked before any call."""

from __future__ import annotations

import pytest

from twinstack.api.access.v1 import access_pb2
from twinstack.sdk._access import create_tenant, update_tenant


def test_quotas_become_the_tenants_own_figures() -> None:
    call = create_tenant("plant", quotas={"max_twins": 5, "ingest_points_per_s": 2.5})
    assert isinstance(call.request, access_pb2.CreateTenantRequest)
    quotas = call.request.tenant.quotas
    assert (quotas.max_twins, quotas.ingest_points_per_s) == (5, 2.5)
    assert not quotas.HasField("max_watches"), "unset: the platform's setting"


@pytest.mark.parametrize(
    ("quotas", "says"),
    [
        ({"max_tweens": 5}, "unknown quotas"),
        ({"max_twins": "many"}, "not a number"),
        ({"max_twins": 2.5}, "not a whole number"),
        ({"max_twins": -1}, "max_twins"),
        ({"max_watches": 10**12}, "max_watches"),
        ({"max_twins": True}, "not a number"),
    ],
)
def test_bad_quotas_are_refused_before_any_call(quotas: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        update_tenant("plant", quotas=quotas)  # type: ignore[arg-type]
