import AxeBuilder from "@axe-core/playwright";
import { expect, type APIRequestContext, type Page, type TestInfo } from "@playwright/test";
import { randomBytes } from "node:crypto";
import { API_PORT, DEVSIM_PORT } from "../playwright.config";

export const API_URL = `http://127.0.0.1:${API_PORT}`;
export const DEVSIM_URL = `http://127.0.0.1:${DEVSIM_PORT}`;

export const MOBILE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

/** Full-page screenshots at desktop and mobile width, kept as test artifacts. */
export async function screenshots(page: Page, testInfo: TestInfo, name: string) {
  const original = page.viewportSize() ?? DESKTOP;
  for (const [label, size] of [["desktop", DESKTOP], ["mobile", MOBILE]] as const) {
    await page.setViewportSize(size);
    const file = testInfo.outputPath(`${name}-${label}.png`);
    await page.screenshot({ path: file, fullPage: true, animations: "disabled" });
    await testInfo.attach(`${name}-${label}`, { path: file, contentType: "image/png" });
  }
  await page.setViewportSize(original);
}

/** axe-core (WCAG 2.x A + AA): no serious or critical violations. */
export async function expectAccessible(page: Page, name: string) {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`),
    `accessibility of ${name}`,
  ).toEqual([]);
}

/** Both checks on the page as it is now. */
export async function capture(page: Page, testInfo: TestInfo, name: string) {
  await expectAccessible(page, name);
  await screenshots(page, testInfo, name);
}

/** Sends `text` as `phone` from the WhatsApp simulator, as a user sends the
 * dashboard's code, and closes its tab. */
export async function sendFromWhatsApp(page: Page, phone: string, text: string): Promise<void> {
  const simulator = await whatsAppSimulator(page, phone);
  await simulator.getByPlaceholder("Type a message").fill(text);
  await simulator.getByRole("button", { name: "Send" }).click();
  // Accepted by gateway-api (Twilio's webhook answered) once marked received.
  await expect(simulator.getByText(text).first()).toBeVisible();
  await expect(simulator.getByText(/^received · /).first()).toBeVisible({ timeout: 15_000 });
  await simulator.close();
}

/** Onboarding as a user does it: the number, then its code sent from it. */
export async function onboard(page: Page, user: { national: string; phone: string }): Promise<void> {
  await page.getByLabel("WhatsApp number").fill(user.national);
  await page.getByRole("button", { name: "Continue" }).click();
  const code = page.getByTestId("phone-code");
  await expect(code).toHaveText(/^[0-9]{6}$/);
  await sendFromWhatsApp(page, user.phone, (await code.textContent()) ?? "");
  await expect(page).toHaveURL(/\/dashboard$/, { timeout: 30_000 });
}

/** The stand-ins' WhatsApp simulator, in a new tab, chatting as `phone`. */
export async function whatsAppSimulator(page: Page, phone: string): Promise<Page> {
  const simulator = await page.context().newPage();
  await simulator.goto(`${DEVSIM_URL}/_devsim/whatsapp`);
  const number = simulator.getByLabel("your phone number");
  await number.fill(phone);
  await number.press("Tab"); // its change event switches the thread
  return simulator;
}

/** Waits for gateway-api to answer: the stack's web app may be up before it. */
export async function waitForApi(request: APIRequestContext): Promise<void> {
  await expect
    .poll(async () => (await request.get(`${API_URL}/api/v1/health`).catch(() => null))?.status(), { timeout: 60_000 })
    .toBe(200);
}

export function uniqueUser() {
  const n = `${Date.now()}`.slice(-7);
  return { email: `e2e-${n}-${randomBytes(2).toString("hex")}@example.com`, national: `555${n}`, phone: `+1555${n}` };
}

export async function devSignIn(page: Page, email: string) {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByRole("button", { name: "Sign in with email" }).click();
}
