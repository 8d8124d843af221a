"""The call tree at the widths people use (1024, 1400 and 1920 px): full names within
reach, nothing clipped, times in one piece; and the screenshots the README shows."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.conftest import LinkedSample

from .conftest import UiServer
from .test_browser import row

WIDTHS = (1024, 1400, 1920)

# For every visible row: is any text cut off by its cell (the name column), and is each
# badge, namespace chip and history link whole and inside it? Names and ids may shrink
# with an ellipsis (their full text is a hover away); nothing else may.
OVERFLOWS = """
() => {
  const problems = [];
  for (const label of document.querySelectorAll(".waterfall .node > .row > .label")) {
    if (label.offsetParent === null) continue;
    const box = label.getBoundingClientRect();
    const id = label.closest(".node").id;
    if (label.scrollWidth > label.clientWidth + 1) {
      const parts = Array.from(
        label.children, (c) => c.className + " " + Math.round(c.getBoundingClientRect().width));
      problems.push(
        `${id}: row text overflows (${label.scrollWidth} > ${label.clientWidth}: ${parts})`);
    }
    for (const item of label.querySelectorAll(".badge, .ns, a.temporal-ui, .sicon, .tl")) {
      const r = item.getBoundingClientRect();
      if (r.width === 0) problems.push(id + ": " + item.className + " not shown");
      if (r.left < box.left - 1 || r.right > box.right + 1)
        problems.push(id + ": " + item.className + " clipped");
      const holder = item.parentElement.getBoundingClientRect();
      if (item.matches(".tl") && (r.left < holder.left - 1 || r.right > holder.right + 1))
        problems.push(id + ": the tail of " + item.parentElement.className + " is cut");
      if (item.scrollWidth > item.clientWidth + 1 && !item.matches("a"))
        problems.push(id + ": " + item.className + " cut");
    }
    for (const time of label.parentElement.querySelectorAll(".bar > span")) {
      if (time.getClientRects().length !== 1 || time.getBoundingClientRect().height > 24)
        problems.push(id + ": duration wraps");
    }
  }
  return problems;
}
"""


@pytest.fixture
async def sized(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A page ``request.param`` pixels wide that fails the test on any JavaScript error."""
    context = await browser.new_context(viewport={"width": request.param, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors: {errors}"


async def _no_overflow(page: Page) -> None:
    problems: list[Any] = await page.evaluate(OVERFLOWS)
    assert problems == [], problems


@pytest.mark.parametrize("sized", WIDTHS, indirect=True)
async def test_names_badges_and_links_fit_at_every_width(
    sized: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    page = sized
    width = page.viewport_size["width"] if page.viewport_size else 0
    for scenario in ("declined", "slow"):
        order = linked_sample.order_ids[scenario]
        await page.goto(f"{ui.url}/workflows/orders/{order}")
        await _no_overflow(page)
        # An id that has to shorten keeps its distinguishing tail and shows in full on hover.
        payment = page.locator(".node[data-kind='workflow'][data-namespace='payments']").first
        wid = payment.locator(":scope > .row .wid")
        await expect(wid).to_have_text(f"payment-{order}")
        await expect(wid.locator(".tl")).to_have_text(re.compile(rf"-{scenario}$"))
        await wid.hover()
        await expect(wid).to_have_attribute("title", f"payment-{order}")
        await expect(payment.locator(":scope > .row a.temporal-ui")).to_be_visible()
        await expect(payment.locator(":scope > .row .badge.link-nexus")).to_have_text("Nexus")
        # With the detail open, the rows still fit and the title wraps only at / or .
        await row(page, "nexus_operation", "process_payment").click()
        title = page.locator("#detail h2")
        await expect(title).to_have_text(re.compile(r"/PaymentsService/process_payment$"))
        assert await title.evaluate("h => h.scrollWidth <= h.clientWidth + 1")
        assert await title.evaluate("h => getComputedStyle(h).overflowWrap") == "normal"
        assert "/<wbr>" in await title.inner_html()
        await expect(page.locator("#detail dl.facts")).to_contain_text("\u00a0UTC")
        await _no_overflow(page)
        if width in (1024, 1400):
            await expect(page.locator("#detail .live-check")).not_to_contain_text("asking")
            await page.screenshot(path=shots / f"tree-{scenario}-{width}.png", full_page=True)


@pytest.mark.parametrize("sized", [1400], indirect=True)
async def test_the_name_column_is_resizable(
    sized: Page, ui: UiServer, linked_sample: LinkedSample
) -> None:
    page = sized
    await page.goto(f"{ui.url}/workflows/orders/{linked_sample.order_ids['declined']}")
    column = page.locator(".axis .label")
    before = await column.bounding_box()
    handle = page.get_by_role("separator", name="Width of the name column")
    box = await handle.bounding_box()
    assert before and box
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(box["x"] - 200, box["y"] + 5, steps=5)
    await page.mouse.up()
    after = await column.bounding_box()
    assert after and abs(after["width"] - (before["width"] - 200)) < 12
    # The rows follow the header, still fit, and the width holds over a reload.
    first = await page.locator("#n0 > .row > .label").bounding_box()
    assert first and abs(first["width"] - after["width"]) < 2
    await _no_overflow(page)
    await page.reload()
    again = await column.bounding_box()
    assert again and abs(again["width"] - after["width"]) < 2
    # The keyboard moves it too.
    await handle.focus()
    await page.keyboard.press("ArrowRight")
    wider = await column.bounding_box()
    assert wider and wider["width"] > again["width"] + 10


# For each edge of the map: its labels that its own arrow runs through, or that cover a
# namespace's box.
ARROWS_THROUGH_LABELS = """
() => {
  const hits = [];
  const inside = (a, b) => a.x < b.x + b.width && b.x < a.x + a.width
    && a.y < b.y + b.height && b.y < a.y + a.height;
  const names = Array.from(
    document.querySelectorAll("figure.map .ns-node rect"), (r) => r.getBBox());
  const paths = Array.from(document.querySelectorAll("figure.map .edge path"));
  for (const text of document.querySelectorAll("figure.map .edge text")) {
    const box = text.getBBox();
    if (names.some((name) => inside(name, box)))
      hits.push(`"${text.textContent}" hides a namespace`);
    for (const path of paths) {
      const length = path.getTotalLength();
      for (let at = 0; at <= length; at += 2) {
        const p = path.getPointAtLength(at);
        if (p.x >= box.x && p.x <= box.x + box.width && p.y >= box.y && p.y <= box.y + box.height) {
          const edge = path.parentElement.dataset;
          hits.push(`${edge.caller}->${edge.callee} runs through "${text.textContent}"`);
          break;
        }
      }
    }
  }
  return hits;
}
"""


@pytest.mark.parametrize("sized", [1024, 1400], indirect=True)
async def test_map_labels_sit_beside_their_arrows(
    sized: Page, ui: UiServer, linked_sample: LinkedSample, shots: Path
) -> None:
    page = sized
    await page.goto(f"{ui.url}/map?window=1h")
    edge = page.locator("figure.map .edge[data-caller='orders'][data-callee='payments']")
    await expect(edge.locator(".edge-label")).to_contain_text("calls")
    assert await page.evaluate(ARROWS_THROUGH_LABELS) == []
    width = page.viewport_size["width"] if page.viewport_size else 0
    await page.screenshot(path=shots / f"map-{width}.png", full_page=True)
