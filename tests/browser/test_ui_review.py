"""The review page in Chromium: leasing asks for the reviewer's name and token first (a wrong
token asks again), an item is labeled with the keyboard, and the label is in the store as the
reviewer's."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

from tests.browser.conftest import Site
from tests.support import history as simulated
from tests.support.browser import Problems

REVIEWER = "keyboard@example.com"
DIALOG = "[data-testid=token-dialog]"


def sign_in(page: Page, token: str) -> None:
    page.wait_for_selector(f"{DIALOG}[open]")
    page.fill("[data-testid=token-reviewer]", REVIEWER)
    page.fill("[data-testid=token-input]", token)
    page.click("[data-testid=token-ok]")


def test_an_item_is_labeled_by_keyboard_after_the_token_prompt(
    page: Page, site: Site, problems: Problems, artefacts: Path
) -> None:
    problems.expect(f"/v1/monitors/{simulated.KEY}/review?", 401)
    page.goto(f"/ui/#/m/{simulated.KEY}/review")
    page.wait_for_selector("main[data-state=ready]")
    sign_in(page, "not-the-token")
    page.wait_for_selector("[data-testid=token-error]:visible")
    assert "did not take that token" in page.inner_text("[data-testid=token-error]")
    sign_in(page, site.token)
    page.wait_for_selector("[data-testid=review-prediction]")
    page.screenshot(path=artefacts / "ui-review.png", full_page=True)
    prediction_id = page.inner_text(
        "[data-testid=review-features] tr:has(th:text-is('prediction id')) td"
    )

    page.keyboard.press("1")
    page.wait_for_selector("[data-testid=review-done] .stat-value:text-is('1')")
    dataset = site.run(
        site.service.ok(
            "GET", f"/v1/monitors/{simulated.KEY}/dataset?window=1d&reviewed=true&format=json"
        )
    )
    [row] = [r for r in dataset if r["prediction_id"] == prediction_id]
    assert (row["actual"], row["reviewer"], row["source"]) == (1, REVIEWER, "review")

    # the token is kept for the session: the next item needs no prompt, s skips it
    page.wait_for_selector("[data-testid=review-prediction]")
    page.keyboard.press("s")
    page.wait_for_selector("[data-testid=review-done] .stat-value:text-is('2')")
    assert not page.is_visible(f"{DIALOG}[open]")
