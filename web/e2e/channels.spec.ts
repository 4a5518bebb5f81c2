import { expect, test, type Page } from "@playwright/test";
import { SMS_NUMBER, TELEGRAM_SIM_PORT, WEB_PORT } from "../playwright.config";
import { API_URL, capture, devSignIn, onboard, sendFromWhatsApp, uniqueUser, waitForApi } from "./helpers";

// The stack runs with WHATSAPP_ALLOWED_COUNTRIES=US, TWILIO_SMS_NUMBER set and
// the Telegram stand-in as its Bot API, whose dev bot's webhook is gateway-api's
// (playwright.config.ts).
const TELEGRAM_LINK = `${API_URL}/api/v1/channels/telegram/link`;
const TELEGRAM_SIM = `http://127.0.0.1:${TELEGRAM_SIM_PORT}`;
// The stand-in's dev bot, as getMe names it.
const BOT_LINK = /^https:\/\/t\.me\/yourclaw_dev_bot\?start=([A-Za-z0-9_-]+)$/;
const CORS = { "access-control-allow-origin": `http://127.0.0.1:${WEB_PORT}` };

test.beforeAll(async ({ request }) => {
  await waitForApi(request);
});

function card(page: Page) {
  return page.getByTestId("channels-card");
}

function row(page: Page, name: "whatsapp" | "telegram" | "sms") {
  return card(page).getByTestId(`channel-${name}`);
}

/** A number WhatsApp may not carry the assistant for: the UK's drama range. */
function britishUser() {
  const user = uniqueUser();
  return { ...user, phone: `+447700900${user.phone.slice(-3)}` };
}

test("a US user sees WhatsApp and SMS linked and picks where reminders go", async ({ page }, testInfo) => {
  const user = uniqueUser();
  await devSignIn(page, user.email);
  await expect(page).toHaveURL(/\/onboarding$/);
  await onboard(page, user);

  await test.step("the Channels card shows every channel", async () => {
    await expect(card(page).getByRole("heading", { name: "Channels" })).toBeVisible();
    await expect(row(page, "whatsapp")).toContainText("Linked");
    await expect(row(page, "whatsapp")).toContainText(`Your number ${user.phone} is verified.`);
    await expect(row(page, "telegram")).toContainText("Not linked");
    await expect(row(page, "telegram").getByRole("button", { name: "Link Telegram" })).toBeVisible();
    await expect(row(page, "sms")).toContainText("Linked");
    await expect(row(page, "sms")).toContainText(`Text ${SMS_NUMBER} from ${user.phone}.`);
    await expect(card(page).getByTestId("effective-channel")).toHaveText("Right now they go to WhatsApp.");
    await capture(page, testInfo, "dashboard-channels");
  });

  await test.step("the preferred channel is saved", async () => {
    const picker = page.getByLabel("Reminders and notices go to");
    // Only the channels the user can be reached on.
    await expect(picker.getByRole("option")).toHaveText(["The channel I last wrote on", "WhatsApp", "SMS"]);
    await picker.selectOption("sms");
    await expect(card(page).getByTestId("effective-channel")).toHaveText("Right now they go to SMS.");
    await page.reload();
    await expect(page.getByLabel("Reminders and notices go to")).toHaveValue("sms");
    await page.getByLabel("Reminders and notices go to").selectOption("");
    await expect(card(page).getByTestId("effective-channel")).toHaveText("Right now they go to WhatsApp.");
  });

  await test.step("voice replies are off until switched on, and stay as set", async () => {
    const voice = card(page).getByRole("switch", { name: "Voice replies" });
    await expect(voice).toHaveAttribute("aria-checked", "false");
    await voice.click();
    await expect(voice).toHaveAttribute("aria-checked", "true");
    await expect(card(page).getByTestId("voice-replies-help")).toContainText("on WhatsApp and Telegram");
    await page.reload();
    await expect(card(page).getByRole("switch", { name: "Voice replies" })).toHaveAttribute("aria-checked", "true");
    await card(page).getByRole("switch", { name: "Voice replies" }).click();
    await expect(card(page).getByRole("switch", { name: "Voice replies" })).toHaveAttribute("aria-checked", "false");
  });
});

test("a number outside WhatsApp's countries proves itself by SMS and is offered Telegram or SMS", async ({ page }, testInfo) => {
  const user = britishUser();
  await devSignIn(page, user.email);
  await expect(page).toHaveURL(/\/onboarding$/);

  await test.step("the code goes by SMS", async () => {
    await page.getByLabel("WhatsApp number").fill(user.phone);
    await page.getByRole("button", { name: "Continue" }).click();
    const code = (await page.getByTestId("phone-code").textContent())?.trim() ?? "";
    expect(code).toMatch(/^[0-9]{6}$/);
    await expect(page.getByTestId("whatsapp-unavailable")).toHaveText(/^WhatsApp is not available in your country/);
    await expect(page.getByRole("link", { name: "Send the code by SMS" })).toHaveAttribute(
      "href",
      `sms:${SMS_NUMBER}?body=${code}`,
    );
    await capture(page, testInfo, "onboarding-code-by-sms");
    // A message from the number carrying the code proves it, whichever channel.
    await sendFromWhatsApp(page, user.phone, code);
    await expect(page).toHaveURL(/\/dashboard$/, { timeout: 30_000 });
  });

  await test.step("WhatsApp is not offered; SMS is where reminders go", async () => {
    await expect(row(page, "whatsapp")).toContainText("Not available");
    await expect(row(page, "whatsapp")).toContainText("WhatsApp is not available in your country");
    await expect(row(page, "whatsapp")).toContainText("Use Telegram or SMS instead.");
    await expect(row(page, "sms")).toContainText(`Text ${SMS_NUMBER} from ${user.phone}.`);
    await expect(card(page).getByTestId("effective-channel")).toHaveText("Right now they go to SMS.");
    await expect(page.getByLabel("Reminders and notices go to").getByRole("option")).toHaveText([
      "The channel I last wrote on",
      "SMS",
    ]);
    await capture(page, testInfo, "dashboard-channels-no-whatsapp");
  });
});

/** A Telegram user's id for this run (the stand-in's chats are private chats). */
function chatId() {
  return 100_000_000 + Math.floor(Math.random() * 800_000_000);
}

/** `text` from `chat`, as Telegram delivers it: the stand-in posts
 * the Update to gateway-api's webhook with the secret token. */
async function sendFromTelegram(page: Page, chat: { id: number; username: string }, text: string) {
  const answer = await page.request.post(`${TELEGRAM_SIM}/_devsim/telegram/updates`, {
    data: { chat_id: chat.id, first_name: "Ada", username: chat.username, text },
  });
  expect(answer.ok()).toBe(true);
  expect((await answer.json()).status, "gateway-api's answer to the webhook").toBe(200);
}

/** What the bot sent the chat `chatId`, oldest first. */
async function botSaid(page: Page, chatId: number): Promise<string[]> {
  const answer = await page.request.get(`${TELEGRAM_SIM}/_devsim/telegram/sent?chat_id=${chatId}`);
  return ((await answer.json()).messages as { text: string }[]).map((m) => m.text);
}

test("Link Telegram: the bot's link, /start <code> from the chat, and the card shows it linked", async ({ page, context }, testInfo) => {
  // Telegram's site is not reached: the link's tab gets a page from here.
  const opened: string[] = [];
  await context.route("https://t.me/**", (route) => {
    opened.push(route.request().url());
    return route.fulfill({ contentType: "text/html", body: "<title>Telegram</title><p>Start the bot</p>" });
  });
  const user = uniqueUser();
  const chat = { id: chatId(), username: `ada_${user.phone.slice(-7)}` };
  await devSignIn(page, user.email);
  await onboard(page, user);
  const telegram = row(page, "telegram");
  await expect(telegram).toContainText("Not linked");

  let url = "";
  await test.step("the link opens in a new tab and the card waits for /start", async () => {
    const linkAnswer = page.waitForResponse((r) => r.url() === TELEGRAM_LINK && r.request().method() === "POST");
    const popup = page.waitForEvent("popup");
    await telegram.getByRole("button", { name: "Link Telegram" }).click();
    const answer = await linkAnswer;
    expect(answer.status()).toBe(200);
    url = (await answer.json()).url;
    expect(url).toMatch(BOT_LINK);
    await expect(await popup).toHaveURL(url);
    expect(opened).toEqual([url]);
    await expect(telegram.getByRole("link", { name: "Open Telegram" })).toHaveAttribute("href", url);
    await expect(telegram.getByRole("status")).toContainText("Press Start in Telegram");
    await expect(telegram.getByTestId("telegram-error")).toHaveCount(0);
  });

  await test.step("Start in the chat sends /start <code>; the card shows the chat linked", async () => {
    const code = BOT_LINK.exec(url)?.[1] ?? "";
    await sendFromTelegram(page, chat, `/start ${code}`);
    await expect(telegram).toContainText("Linked", { timeout: 15_000 });
    await expect(telegram).toContainText(`Your Telegram chat @${chat.username} is linked.`);
    await expect(telegram.getByRole("status")).toHaveCount(0);
    // messaging's answer in the chat.
    await expect.poll(() => botSaid(page, chat.id), { timeout: 30_000 }).toContainEqual(
      expect.stringMatching(/^This chat is linked to your YourClaw account\./),
    );
    await capture(page, testInfo, "dashboard-channels-telegram-linked");
  });

  await test.step("Telegram is chosen for reminders and notices", async () => {
    const picker = page.getByLabel("Reminders and notices go to");
    await expect(picker.getByRole("option")).toHaveText(["The channel I last wrote on", "WhatsApp", "Telegram", "SMS"]);
    // /start was the last message the user wrote, so Telegram already is where they go.
    await expect(card(page).getByTestId("effective-channel")).toHaveText("Right now they go to Telegram.");
    await picker.selectOption("telegram");
    await expect(card(page).getByTestId("effective-channel")).toHaveText("Right now they go to Telegram.");
    await page.reload();
    await expect(page.getByLabel("Reminders and notices go to")).toHaveValue("telegram");
    await expect(card(page).getByTestId("effective-channel")).toHaveText("Right now they go to Telegram.");
  });
});

test("Link Telegram on a server whose bot is not fully set up says so", async ({ page }) => {
  // The stack's bot is set up: its 503 TELEGRAM_NOT_CONFIGURED (a bot token
  // without a webhook secret) is stood in for here.
  await page.route(TELEGRAM_LINK, (route) =>
    route.fulfill({
      status: 503,
      headers: CORS,
      json: { detail: "Telegram is not configured on this server", code: "TELEGRAM_NOT_CONFIGURED" },
    }),
  );
  const user = uniqueUser();
  await devSignIn(page, user.email);
  await onboard(page, user);
  const telegram = row(page, "telegram");
  await telegram.getByRole("button", { name: "Link Telegram" }).click();
  await expect(telegram.getByTestId("telegram-error")).toHaveText("Telegram isn't set up on this server yet.");
  await expect(telegram).toContainText("Not linked");
});
