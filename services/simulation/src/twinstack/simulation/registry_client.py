"""The simulation service's one call to another service: twins selected by a registry graph
query (QueryTwins), made on behalf of the caller.

The caller's own credential is forwarded, so the registry checks the caller's rights, not the
simulation service's: a sweep can only select twins its submitter may read.
"""

from __future__ import annotations

from typing import Any

import grpc

from twinstack import sdk
from twinstack.api.registry.v1 import registry_pb2, registry_pb2_grpc
from twinstack.common.errors import (
    FieldViolation,
    InvalidArgumentError,
    PermissionDeniedError,
    UnavailableError,
)
from twinstack.common.gatekeeper import current_ids, current_principal

# Twins per QueryTwins page: few round trips for large selections, small messages.
QUERY_PAGE_SIZE = 1000


class RegistryQueries:
    """Answers twin queries with the registry's QueryTwins, page after page.

    Args:
        config: How to reach the registry (its address, token, TLS); create it inside the
            event loop that uses it.
    """

    def __init__(self, config: sdk.ConnectConfig) -> None:
        self._config = config
        self._channel = config.aio_channels()["registry"]
        self._stub: Any = registry_pb2_grpc.RegistryServiceStub(self._channel)

    async def twin_ids(self, query: str, limit: int) -> list[str]:
        """The ids of the twins ``query`` matches, in id order, at most ``limit``.

        Raises:
            InvalidArgumentError: The registry refused the query (field ``twins.query``).
            UnavailableError: The registry did not answer.
        """
        credential = current_principal().credential
        tenant_ids = current_ids()
        metadata = (("authorization", f"Bearer {credential}"),) if credential else ()
        ids: list[str] = []
        request = registry_pb2.QueryTwinsRequest(query=query)
        request.page.page_size = min(QUERY_PAGE_SIZE, limit)
        try:
            while len(ids) < limit:
                try:
                    response = await self._stub.QueryTwins(
                        request, metadata=metadata, timeout=self._config.timeout_s
                    )
                except grpc.RpcError as error:
                    raise sdk.ApiError.from_rpc_error(error) from error
                # The registry answers with the caller's own ids; this service works on
                # internal ones (twinstack.common.tenancy).
                ids.extend(tenant_ids.inner(twin.id) for twin in response.twins)
                if not response.page.next_page_token:
                    break
                request.page.page_token = response.page.next_page_token
        except sdk.InvalidArgumentError as error:
            raise InvalidArgumentError(
                "invalid twin query", [FieldViolation("twins.query", error.message)]
            ) from None
        except (sdk.PermissionDeniedError, sdk.UnauthenticatedError) as error:
            raise PermissionDeniedError(
                f"the registry refused the caller's twin query: {error.message}"
            ) from None
        except sdk.ApiError as error:
            raise UnavailableError(
                f"the registry did not answer the twin query ({error.code.name})"
            ) from None
        return ids[:limit]

    async def close(self) -> None:
        await self._channel.close()
