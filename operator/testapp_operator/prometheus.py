"""The canary's one call to Prometheus: an instant query (GET /api/v1/query).

The address is the operator's --prometheus flag (env TESTAPP_PROMETHEUS_URL). Every failure comes
back as `canary.QueryFailed`, never raised: the analysis counts it as an error
(`consecutiveErrorLimit`), which is what a canary must do when it cannot see its numbers.
"""

from __future__ import annotations

import aiohttp

from testapp_operator.canary import QueryFailed, QueryOutcome, parse_query_response

# A measurement is one instant query; a Prometheus slower than this is an error to count.
QUERY_TIMEOUT = 10.0


class Prometheus:
    def __init__(self, url: str, timeout: float = QUERY_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def query(self, promql: str) -> QueryOutcome:
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as session,
                session.get(f"{self.url}/api/v1/query", params={"query": promql}) as response,
            ):
                return parse_query_response(response.status, await response.read())
        except (TimeoutError, aiohttp.ClientError) as error:
            return QueryFailed(f"{self.url}: {type(error).__name__}: {error}")
