import AxeBuilder from "@axe-core/playwright";
import { expect, type Page, type TestInfo } from "@playwright/test";
import { createHmac, randomBytes } from "node:crypto";
import { API_PORT } from "../playwright.config";

export const API_URL = `http://127.0.0.1:${API_PORT}`;
// yourclaw-up's dev defaults (libs/devkit/src/yourclaw_devkit/up.py).
const TWILIO_AUTH_TOKEN = process.env.TWILIO_AUTH_TOKEN ?? "dev-twilio-auth-token";
const TWILIO_ACCOUNT_SID = "ACdev00000000000000000000000000000";
const TWILIO_WHATSAPP_NUMBER = "whatsapp:+14155238886";

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

/** What Twilio sends for an incoming WhatsApp message, signed as Twilio signs it
 * (the same as `yourclaw-dev send`; used until devsim has a simulator page). */
export async function sendWhatsApp(from: string, body: string) {
  const sid = `SM${randomBytes(16).toString("hex")}`;
  const form: Record<string, string> = {
    SmsMessageSid: sid,
    NumMedia: "0",
    ProfileName: "E2E User",
    MessageType: "text",
    SmsSid: sid,
    WaId: from.replace(/^\+/, ""),
    SmsStatus: "received",
    Body: body,
    To: TWILIO_WHATSAPP_NUMBER,
    NumSegments: "1",
    ReferralNumMedia: "0",
    MessageSid: sid,
    AccountSid: TWILIO_ACCOUNT_SID,
    From: `whatsapp:${from}`,
    ApiVersion: "2010-04-01",
  };
  const url = `${API_URL}/api/v1/webhooks/twilio/whatsapp`;
  const signed = url + Object.keys(form).sort().map((k) => k + form[k]).join("");
  const signature = createHmac("sha1", TWILIO_AUTH_TOKEN).update(signed).digest("base64");
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature },
    body: new URLSearchParams(form).toString(),
  });
  expect(response.status, await response.text()).toBe(200);
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
