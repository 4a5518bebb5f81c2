import { expect, test, type Page } from "@playwright/test";
import { SUPABASE_URL } from "../playwright.config";
import { DEFAULT_NEXT, safeNext } from "../src/lib/safe-next";
import { API_URL, devSignIn, uniqueUser } from "./helpers";

// `next` values a browser would read as another site, raw and as they arrive
// URL-encoded in the query.
const OFFSITE = [
  "//evil.example",
  "/\\evil.example",
  "https://evil.example",
  "http:evil.example",
  "/\t/evil.example",
  "/.//evil.example",
  "/a/..//evil.example",
  "javascript:alert(1)",
  "%2F%2Fevil.example",
];

test.describe("the sign-in redirect", () => {
  test("safeNext keeps paths on this site and refuses the rest", () => {
    expect(safeNext("/dashboard/usage?tab=week#today")).toBe("/dashboard/usage?tab=week#today");
    expect(safeNext("/%2F%2Fevil.example")).toBe("/%2F%2Fevil.example"); // a path here, 404
    for (const next of [...OFFSITE, null, "", "dashboard"]) expect(safeNext(next), String(next)).toBe(DEFAULT_NEXT);
  });

  test("a signed-in user is never sent to another site by ?next=", async ({ page, baseURL }) => {
    await page.goto(`/login?next=${encodeURIComponent("//evil.example")}`);
    await page.getByLabel("Email").fill(uniqueUser().email);
    await page.getByRole("button", { name: "Sign in with email" }).click();
    await expectOnSite(page, baseURL!);
    // Signed in now: the login page forwards at once, for every form of ?next=.
    for (const next of OFFSITE) {
      await page.goto(`/login?next=${encodeURIComponent(next)}`);
      await expectOnSite(page, baseURL!);
    }
    for (const raw of ["next=%252F%252Fevil.example", "next=/%5Cevil.example", "next=%2F%09%2Fevil.example"]) {
      await page.goto(`/login?${raw}`);
      await expectOnSite(page, baseURL!);
    }
  });

  test("the Google callback refuses an off-site ?next= too", async ({ page, baseURL }) => {
    // Supabase stands in: the authorize redirect is caught, and the PKCE code
    // exchange answers with a session.
    await page.route(`${SUPABASE_URL}/**`, async (route) => {
      const url = new URL(route.request().url());
      if (url.pathname === "/auth/v1/token") {
        const now = Math.floor(Date.now() / 1000);
        await route.fulfill({
          status: 200,
          contentType: "application/json",
          body: JSON.stringify({
            access_token: "e2e-not-a-real-token",
            token_type: "bearer",
            expires_in: 3600,
            expires_at: now + 3600,
            refresh_token: "e2e-refresh",
            user: { id: "00000000-0000-4000-8000-000000000001", aud: "authenticated", email: "e2e@example.com" },
          }),
        });
        return;
      }
      await route.fulfill({ status: 200, contentType: "text/html", body: "<title>Google</title><h1>Google sign-in</h1>" });
    });
    await page.goto("/login");
    await page.getByRole("button", { name: "Continue with Google" }).click();
    await expect(page.getByRole("heading", { name: "Google sign-in" })).toBeVisible();
    await page.goto(`/auth/callback?code=e2e-code&next=${encodeURIComponent("/\\evil.example")}`);
    await expectOnSite(page, baseURL!);
  });
});

async function expectOnSite(page: Page, baseURL: string) {
  // The dashboard, or where it sends this user next: onboarding (no phone yet),
  // or back to sign-in when the API refuses the Supabase stand-in's token.
  await expect(page).toHaveURL(/\/(dashboard|onboarding)$|\/login\?next=%2Fdashboard$/);
  expect(new URL(page.url()).origin).toBe(new URL(baseURL).origin);
}

test.describe("security headers", () => {
  for (const path of ["/", "/login", "/dashboard"]) {
    test(`${path} is sent with CSP, HSTS, nosniff, Referrer-Policy, no framing`, async ({ request }) => {
      const response = await request.get(path, { maxRedirects: 0 });
      const headers = response.headers();
      expect(headers["strict-transport-security"]).toMatch(/^max-age=\d{7,}/);
      expect(headers["x-content-type-options"]).toBe("nosniff");
      expect(headers["referrer-policy"]).toBe("strict-origin-when-cross-origin");
      expect(headers["x-frame-options"]).toBe("DENY");
      const csp = parseCsp(headers["content-security-policy"] ?? "");
      expect(csp.get("frame-ancestors")).toEqual(["'none'"]);
      expect(csp.get("object-src")).toEqual(["'none'"]);
      expect(csp.get("base-uri")).toEqual(["'self'"]);
      expect(csp.get("connect-src")).toEqual(["'self'", API_URL, SUPABASE_URL]);
      const scripts = csp.get("script-src") ?? [];
      expect(scripts).toContain("'strict-dynamic'");
      expect(scripts.some((s) => /^'nonce-[A-Za-z0-9+/=]{16,}'$/.test(s))).toBe(true);
      expect(scripts).not.toContain("'unsafe-inline'");
      expect(scripts).not.toContain("'unsafe-eval'");
    });
  }

  test("every request gets a new nonce", async ({ request }) => {
    const nonce = async () => (await request.get("/login")).headers()["content-security-policy"]?.match(/'nonce-([^']+)'/)?.[1];
    expect(await nonce()).not.toBe(await nonce());
  });

  test("the app works under its policy: no violations while signing in", async ({ page }) => {
    const violations: string[] = [];
    page.on("console", (message) => {
      if (/Content[- ]Security[- ]Policy/i.test(message.text())) violations.push(message.text());
    });
    await page.goto("/");
    await expect(page.getByRole("heading", { level: 1 })).toBeVisible();
    await devSignIn(page, uniqueUser().email);
    await expect(page).toHaveURL(/\/onboarding$/);
    await expect(page.getByRole("heading", { name: "Your WhatsApp number" })).toBeVisible();
    expect(violations).toEqual([]);
  });

  test("injected markup cannot run script", async ({ page }) => {
    await page.goto("/login");
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
    // What an HTML injection would add: an inline event handler.
    const outcome = await page.evaluate(async () => {
      const blocked = new Promise<string>((resolve) =>
        document.addEventListener("securitypolicyviolation", (e) => resolve(e.effectiveDirective), { once: true }),
      );
      const holder = document.createElement("div");
      holder.innerHTML = '<img alt="" src="data:," onerror="window.__injected = true">';
      document.body.appendChild(holder);
      const directive = await Promise.race([blocked, new Promise<string>((r) => setTimeout(() => r("none"), 2000))]);
      return { directive, ran: (window as unknown as { __injected?: boolean }).__injected === true };
    });
    expect(outcome).toEqual({ directive: "script-src-attr", ran: false });
  });
});

function parseCsp(value: string): Map<string, string[]> {
  const directives = new Map<string, string[]>();
  for (const part of value.split(";")) {
    const [name, ...sources] = part.trim().split(/\s+/);
    if (name) directives.set(name, sources);
  }
  return directives;
}
