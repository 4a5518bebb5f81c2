import { expect, test } from "@playwright/test";
import { capture } from "./helpers";

const PAGES = [
  { path: "/", heading: "Your always-on AI assistant on WhatsApp." },
  { path: "/pricing", heading: "One plan, $20 a month" },
  { path: "/privacy", heading: "Privacy policy" },
  { path: "/terms", heading: "Terms of service" },
];

test.describe("marketing pages", () => {
  for (const { path, heading } of PAGES) {
    test(`${path} is accessible, with screenshots`, async ({ page }, testInfo) => {
      await page.goto(path);
      await expect(page.getByRole("heading", { level: 1, name: heading })).toBeVisible();
      await capture(page, testInfo, `marketing${path === "/" ? "-home" : path.replace("/", "-")}`);
    });
  }

  test.describe("without JavaScript", () => {
    test.use({ javaScriptEnabled: false });

    test("every marketing page renders and links work", async ({ page }) => {
      for (const { path, heading } of PAGES) {
        await page.goto(path);
        await expect(page.getByRole("heading", { level: 1, name: heading })).toBeVisible();
      }
      await page.goto("/");
      await expect(page.getByText("Watches, notifies, acts — while you sleep.")).toBeVisible();
      await expect(page.getByRole("figure", { name: "Example WhatsApp conversation with YourClaw" })).toBeVisible();
      await expect(page.getByText("$20", { exact: true }).first()).toBeVisible();
      // The FAQ is <details>: it opens without JavaScript.
      await page.getByText("Can I use my own API keys?").click();
      await expect(page.getByText("only ever show its last four characters")).toBeVisible();
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Pricing" }).click();
      await expect(page).toHaveURL(/\/pricing$/);
      await expect(page.getByRole("heading", { level: 1, name: "One plan, $20 a month" })).toBeVisible();
    });
  });
});
