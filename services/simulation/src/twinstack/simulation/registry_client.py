"""The simulation service's one call to another service: twins selected by a registry graph
query (QueryTwins), through the SDK's asyncio client."""

from __future__ import annotations

import contextlib

from twinstack import sdk
from twinstack.common.errors import FieldViolation, InvalidArgumentError, UnavailableError

# Twins per QueryTwins page: few round trips for large selections, small messages.
QUERY_PAGE_SIZE = 1000


class RegistryQueries:
    """Answers twin queries with the registry's QueryTwins, page after page.

    Args:
        config: How to reach the registry (its address, token, TLS); create it inside the
            event loop that uses it.
    """

    def __init__(self, config: sdk.ConnectConfig) -> None:
        self._client = sdk.AsyncClient(config)

    async def twin_ids(self, query: str, limit: int) -> list[str]:
        """The ids of the twins ``query`` matches, in id order, at most ``limit``.

        Raises:
            InvalidArgumentError: The registry refused the query (field ``twins.query``).
            UnavailableError: The registry did not answer.
        """
        ids: list[str] = []
        twins = self._client.registry.query_twins(query, page_size=QUERY_PAGE_SIZE)
        try:
            # Closed at once when the limit stops the paging early, not when collected.
            async with contextlib.aclosing(twins):  # type: ignore[type-var]
                async for twin in twins:
                    ids.append(twin.id)
                    if len(ids) >= limit:
                        break
        except sdk.InvalidArgumentError as error:
            raise InvalidArgumentError(
                "invalid twin query", [FieldViolation("twins.query", error.message)]
            ) from None
        except sdk.ApiError as error:
            raise UnavailableError(
                f"the registry did not answer the twin query ({error.code.name})"
            ) from None
        return ids

    async def close(self) -> None:
        await self._client.close()
