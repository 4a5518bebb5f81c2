import { expect, test } from "@playwright/test";
import { SUPABASE_URL } from "../playwright.config";
import { capture } from "./helpers";

test("Continue with Google starts Supabase's PKCE flow", async ({ page }) => {
  let authorize: URL | null = null;
  await page.route(`${SUPABASE_URL}/**`, async (route) => {
    authorize = new URL(route.request().url());
    await route.fulfill({ status: 200, contentType: "text/html", body: "<title>Google</title><h1>Google sign-in</h1>" });
  });
  await page.goto("/login?next=%2Fdashboard%2Fusage");
  await page.getByRole("button", { name: "Continue with Google" }).click();
  await expect(page.getByRole("heading", { name: "Google sign-in" })).toBeVisible();
  const url = authorize as URL | null;
  expect(url?.pathname).toBe("/auth/v1/authorize");
  expect(url?.searchParams.get("provider")).toBe("google");
  expect(url?.searchParams.get("code_challenge_method")).toBe("s256");
  expect(url?.searchParams.get("redirect_to")).toMatch(/\/auth\/callback\?next=%2Fdashboard%2Fusage$/);
});

test("a failed Google sign-in says why and offers the way back", async ({ page }, testInfo) => {
  await page.goto("/auth/callback?error=access_denied&error_description=The+user+denied+access");
  await expect(page.getByRole("alert").filter({ hasText: "The user denied access" })).toBeVisible();
  await capture(page, testInfo, "auth-callback-error");
  await page.getByRole("link", { name: "Back to sign-in" }).click();
  await expect(page).toHaveURL(/\/login$/);
});
