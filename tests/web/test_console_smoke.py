"""Every page renders for a signed-in admin."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient


@pytest.mark.parametrize(
    "path",
    ["/numbers", "/users", "/flows", "/flows/main", "/calls/live", "/calls", "/ledger", "/audit"],
)
async def test_every_page_renders(client: TestClient, csrf: str, path: str) -> None:
    response = await client.get(path)
    text = await response.text()
    assert response.status == 200, text
    assert 'data-testid="balance"' in text
    assert "20.00" in text  # the demo wallet
