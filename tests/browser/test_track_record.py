"""The track record shows the seed's three example assistants side by side, and each one's record, at a
laptop's 1366 px without any element overflowing its card."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import LIVE_DB, log_in, screenshot
from training.examples import EXAMPLES, examples_create

pytestmark = LIVE_DB

# Every element of every card lies within the card's box (a pixel of rounding aside), and the page does
# not scroll sideways. Elements that are not laid out (a closed <details>, hidden) have no box to check.
OVERFLOWING = """() => {
  const out = [];
  if (document.documentElement.scrollWidth > window.innerWidth) {
    out.push(`page ${document.documentElement.scrollWidth} px wide in a ${window.innerWidth} px window`);
  }
  for (const card of document.querySelectorAll('.card')) {
    const box = card.getBoundingClientRect();
    const name = card.id || card.querySelector('h2, h1')?.textContent.trim() || 'card';
    if (card.scrollWidth > card.clientWidth + 1) {
      out.push(`${name}: content ${card.scrollWidth} px > ${card.clientWidth} px`);
    }
    for (const el of card.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < box.left - 1 || r.right > box.right + 1) {
        const [where, within] = [[r.left, r.right], [box.left, box.right]].map((b) => b.map(Math.round));
        out.push(`${name}: <${el.tagName.toLowerCase()}> ${where.join("–")} outside ${within.join("–")}`);
      }
    }
  }
  return out;
}"""


def test_the_seeds_three_assistants_side_by_side_and_each_record_fit_at_1366px(page, alice):
    examples_create(weeks=12, per_day=4)
    page.set_viewport_size({"width": 1366, "height": 900})
    log_in(page, "alice", "alice-password")

    page.click("nav >> text=Track record")
    expect(page.locator("h1")).to_have_text("Training track record")
    rows = page.locator("#track-record-all tbody tr")
    expect(rows).to_have_count(3)
    for example in EXAMPLES:
        row = page.locator(f"#track-{example.slug}")
        expect(row.locator("td").first).to_contain_text(example.name)
        expect(row.locator("td").nth(1)).not_to_have_text("0")  # it has a history of jobs
    assert page.evaluate(OVERFLOWING) == []
    screenshot(page, "track-record-all-1366.png")

    for example in EXAMPLES:
        page.click(f"#track-{example.slug} a")
        expect(page.locator("h1")).to_contain_text(f"Track record · {example.name}")
        # The chart drew (charts.js marks its canvas) beside its table of numbers.
        expect(page.locator('canvas[data-chart="version-rate-chart"][data-rendered="1"]')).to_have_count(1)
        expect(page.locator("#success-rate-data tbody tr")).to_have_count(12)
        expect(page.locator("#deployed-versions tbody tr").first).to_contain_text(f"{example.slug}-v")
        problems = page.evaluate(OVERFLOWING)
        assert problems == [], (example.slug, problems[:8])
        screenshot(page, f"track-record-{example.slug}-1366.png")
        page.click("nav.switcher >> text=All assistants")
        expect(rows).to_have_count(3)
