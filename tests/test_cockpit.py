"""The cockpit page end to end in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

The server is the real app under uvicorn on loopback with embedded defaults (SQLite file,
built-in market data, paper broker); the page loads only what the app serves (any other
request is aborted and counted as an error). No LLM here (no Ollama). Screenshots of each
screen land in tests/output/cockpit/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.async_api import Page, expect

from state import Settings
from tests.browser_support import new_page, screenshot
from tests.http_support import Served, serving
from tests.test_api_runs import wait_for_status


@pytest.fixture
def embedded(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(llm_enabled=False)


async def start_from_page(page: Page, symbols: str, *, scenario: str = "uptrend", approval: str = "always") -> None:
    await page.fill("#start-form input[name=symbols]", symbols)
    await page.select_option("#start-form select[name=scenario]", scenario)
    await page.select_option("#start-form select[name=approval_mode]", approval)
    await page.click("#start-form button[type=submit]")
    await expect(page.locator("#notice")).to_contain_text("started")


async def only_run(served: Served, symbol: str) -> str:
    runs = (await served.client.get("/runs", params={"symbol": symbol})).json()["runs"]
    return runs[0]["thread_id"]


async def test_an_operator_approves_a_run_from_the_page_and_sees_it_execute(embedded: Settings, browser: Any) -> None:
    async with serving(embedded) as served:
        page = await new_page(browser, served.base_url)
        await page.goto("/")
        await expect(page.locator("#trail-status")).to_have_text("live")
        await start_from_page(page, "BTC/USDT")

        trail = page.locator("#trail-list li")
        await expect(page.locator('#trail-list li[data-event="interrupt"]')).to_have_count(1, timeout=30_000)
        assert await page.locator('#trail-list li[data-event="MARKET_DATA"]').count() == 1
        await page.select_option("#trail-layer", "L4")
        visible = await trail.evaluate_all("items => items.filter(i => !i.hidden).map(i => i.dataset.layer)")
        assert visible and set(visible) == {"L4"}  # the layer filter shows strategies only
        await page.select_option("#trail-layer", "")
        await page.locator('#trail-list li[data-event="interrupt"]').click()
        await expect(page.locator('#trail-list li[data-event="interrupt"] pre')).to_contain_text("proposal")
        await screenshot(page, "1-audit-trail")

        await page.click('#tabs button[data-tab="approvals"]')
        card = page.locator('[data-testid="approval-card"]')
        await expect(card).to_have_count(1)
        await expect(card).to_contain_text("BUY BTC/USDT")
        await expect(card.locator("canvas").first).to_be_visible()  # the proposal's chart
        await expect(page.locator("#approval-count")).to_have_text("1")
        await screenshot(page, "2-approvals")

        await page.click(".identity summary")
        await page.fill("#operator", "erin")
        await page.dispatch_event("#operator", "change")
        await card.locator('button[data-action="approve"]').click()
        await expect(page.locator('#trail-list li[data-event="ORDER_FILLED"]')).to_have_count(1, timeout=30_000)
        await expect(page.locator('#trail-list li[data-event="decision"]').first).to_contain_text("BUY")
        await expect(page.locator("#approval-count")).to_have_text("0")
        await page.click('#tabs button[data-tab="trail"]')
        await screenshot(page, "3-executed")

        thread_id = await only_run(served, "BTC/USDT")
        run = (await served.client.get(f"/runs/{thread_id}")).json()
        assert run["decision"]["action"] == "BUY" and run["state"]["approval"]["by"] == "erin"

        await page.click('#tabs button[data-tab="symbol"]')
        await page.select_option("#symbol-run", thread_id)
        await expect(page.locator("#symbol-decision")).to_contain_text("BUY")
        await expect(page.locator("#symbol-chart canvas").first).to_be_visible()
        legend = await page.locator("#symbol-legend span").all_inner_texts()
        assert {"entry", "stop", "target"} <= set(legend) and "confluence" in legend
        await screenshot(page, "4-symbol-chart")
        assert page.errors == []
        await page.context.close()


async def test_the_kill_switch_on_the_page_holds_new_runs(embedded: Settings, browser: Any) -> None:
    async with serving(embedded) as served:
        first = (await served.client.post("/runs", params={"wait": "true"}, json={"symbols": ["ETH/USDT", "SOL/USDT"], "scenario": "uptrend"})).json()
        assert [r["decision"]["action"] for r in first["runs"]] == ["BUY", "BUY"]
        page = await new_page(browser, served.base_url)
        page.on("dialog", lambda dialog: dialog.accept())
        await page.goto("/")
        await page.click('#tabs button[data-tab="risk"]')
        await expect(page.locator('[data-testid="limit-ETH/USDT"]')).to_be_visible()
        await expect(page.locator('[data-testid="limit-heat"]')).to_contain_text("of 10.00 %")
        await page.fill('input[aria-label="halt reason"]', "exchange outage")
        await page.click('[data-testid="halt-button"]')
        await expect(page.locator("#governor-badge")).to_contain_text("HALTED: exchange outage")
        await screenshot(page, "5-kill-switch")

        await start_from_page(page, "BTC/USDT", approval="observe")
        held = await wait_for_status(served.client, await only_run(served, "BTC/USDT"), "done")
        assert held["decision"]["action"] == "REJECT" and "halt" in held["decision"]["reason"].lower()
        await expect(page.locator('#trail-list li[data-event="decision"][data-symbol="BTC/USDT"]')).to_contain_text("REJECT")

        await page.click('#tabs button[data-tab="heatmap"]')
        await expect(page.locator('[data-testid="heatmap-table"] tr[data-symbol="ETH/USDT"]')).to_be_visible()
        consensus = await page.locator('[data-testid="heat-ETH/USDT-consensus"]').get_attribute("data-value")
        assert consensus and float(consensus) > 0  # the uptrend's consensus is long
        await screenshot(page, "6-heatmap")

        await page.click('#tabs button[data-tab="risk"]')
        await page.click('[data-testid="resume-button"]')
        await expect(page.locator("#governor-badge")).to_have_text("trading")
        assert (await served.client.get("/governor")).json()["halted"] is False
        assert page.errors == []
        await page.context.close()


async def test_stepping_a_replay_and_forking_a_what_if(embedded: Settings, browser: Any) -> None:
    async with serving(embedded) as served:
        started = (await served.client.post("/runs", params={"wait": "true"}, json={"symbol": "BTC/USDT", "scenario": "uptrend", "approval_mode": "always"})).json()
        thread_id = started["runs"][0]["thread_id"]
        page = await new_page(browser, served.base_url)
        await page.goto("/")
        await page.click('#tabs button[data-tab="replay"]')
        await page.select_option("#replay-run", thread_id)
        position = page.locator('[data-testid="replay-position"]')
        await expect(position).to_contain_text("step -1")
        await expect(page.locator('[data-testid="replay-diff"]')).not_to_contain_text("request")
        await page.click("#replay-next")
        await expect(position).to_contain_text("step 0")
        await expect(page.locator('[data-testid="replay-diff"]')).to_contain_text("request added")
        last = int(await page.locator("#replay-slider").get_attribute("max"))
        for _ in range(last - 1):
            await page.click("#replay-next")
        await expect(position).to_contain_text("risk → approval")
        await expect(page.locator('[data-testid="replay-diff"]')).to_contain_text("risk added")
        await screenshot(page, "7-replay")

        await page.select_option('#fork-form select[name="approval_mode"]', "observe")
        await page.click('#fork-form button[type="submit"]')
        await expect(page.locator('[data-testid="fork-result"]')).to_contain_text("BUY", timeout=30_000)
        await screenshot(page, "8-fork")
        original = (await served.client.get(f"/runs/{thread_id}")).json()
        assert original["pending_interrupt"] is not None  # the original still waits for its operator
        assert page.errors == []
        await page.context.close()
