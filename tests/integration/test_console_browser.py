"""The console in a real browser: sign in with a key, label with the keyboard, undo, and what
lands in the store through the broker and the indexer.

Set ``MLCYCLE_CONSOLE_SCREENSHOT`` to a path to keep a copy of the queue page's screenshot
there too (``scripts/console_screenshot.py`` does, for docs/console.png).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.fixtures.broker import wait_for
from tests.fixtures.console import ConsoleStack

pytestmark = pytest.mark.integration

LABELED = 5


def _sign_in(page, url: str, secret: str) -> None:  # noqa: ANN001 (a Playwright page)
    page.goto(f"{url}/console/queue")
    page.get_by_label("API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#card[data-item-id]")


def _current(page) -> str:  # noqa: ANN001
    return page.locator("#card").get_attribute("data-item-id")


def test_a_reviewer_labels_five_with_the_keyboard_undoes_one_and_four_votes_count(
    console_stack: ConsoleStack, chromium, tmp_path: Path
) -> None:
    stack = console_stack
    context = chromium.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    _sign_in(page, stack.url, "rita-secret")
    assert page.locator("#who").inner_text() == "rita"
    assert page.locator("#comment-text mark.towards").count() >= 1  # the words behind the score
    screenshot = tmp_path / "console-queue.png"
    page.screenshot(path=str(screenshot), full_page=True)
    if target := os.environ.get("MLCYCLE_CONSOLE_SCREENSHOT"):
        shutil.copyfile(screenshot, target)

    labeled = []
    for n in range(LABELED):
        item = _current(page)
        labeled.append(item)
        page.keyboard.press(str(n % 2))
        page.wait_for_function(
            "id => document.querySelector('#card') && "
            "document.querySelector('#card').dataset.itemId !== id",
            arg=item,
        )
    assert len(set(labeled)) == LABELED
    moved_on_to = _current(page)
    assert moved_on_to not in labeled

    # Undo outlives the page: the tab remembers the reviewer's labels across a reload.
    page.reload()
    page.wait_for_selector("#card[data-item-id]")
    page.keyboard.press("u")
    page.wait_for_function(
        "id => document.querySelector('#card').dataset.itemId === id", arg=labeled[-1]
    )
    assert "Undid the label" in page.locator("#status").inner_text()

    # Through the broker and the indexer: exactly the four kept labels are stored as rita's.
    kept = sorted(labeled[:-1])
    wait_for(lambda: stack.human_votes("rita") == kept, timeout_s=15)
    # The retraction followed its vote on one partition: nothing lands after it.
    assert stack.human_votes("rita") == kept
    assert screenshot.stat().st_size > 10_000
    context.close()

    # A read key sees the queue, is told it cannot label, and the server refuses if it tries.
    reader = chromium.new_context(viewport={"width": 640, "height": 900})
    page = reader.new_page()
    _sign_in(page, stack.url, "reed-secret")
    assert page.locator("#read-only").is_visible()
    assert page.locator(".label-button").first.is_disabled()
    before = _current(page)
    page.keyboard.press("1")
    assert "cannot label" in page.locator("#status").inner_text()
    assert _current(page) == before
    answer = page.evaluate(
        """() => fetch('/console/labels', {method: 'POST', headers: {
              'Content-Type': 'application/json',
              'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
            body: JSON.stringify({item_id: document.querySelector('#card').dataset.itemId,
                                  label: 1, task: 'toxicity'})}).then(r => r.status)"""
    )
    assert answer == 403
    # At 640 px (a 1280 px screen at 200 %), nothing scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    reader.close()
    assert stack.human_votes("reed") == []
    assert httpx.get(f"{stack.url}/console/static/console.js").status_code == 200
