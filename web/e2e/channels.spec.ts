import { expect, test, type Page } from "@playwright/test";
import { SMS_NUMBER, WEB_PORT } from "../playwright.config";
import { API_URL, capture, devSignIn, onboard, sendFromWhatsApp, uniqueUser, waitForApi } from "./helpers";

// The stack runs with WHATSAPP_ALLOWED_COUNTRIES=US and TWILIO_SMS_NUMBER set
// (playwright.config.ts), and without a Telegram bot.
const CHANNELS = `${API_URL}/api/v1/channels`;
const TELEGRAM_LINK = `${API_URL}/api/v1/channels/telegram/link`;
const TELEGRAM_URL = "https://t.me/yourclaw_e2e_bot?start=e2e-link-code";
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
    await expect(row(page, "telegram")).toContainText("Not set up");
    await expect(row(page, "telegram")).toContainText("Telegram isn't set up on this server yet.");
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

test("Link Telegram opens the bot's link and the card shows the chat once linked", async ({ page, context }) => {
  // This stack has no Telegram bot: the API's answers about Telegram are
  // stood in for here; nothing is sent to t.me.
  let linked = false;
  await page.route(CHANNELS, async (route) => {
    const response = await route.fetch();
    const body = await response.json();
    body.channels[1] = { name: "telegram", available: true, linked, address: linked ? "@ada_e2e" : null };
    await route.fulfill({ response, json: body });
  });
  await context.route("https://t.me/**", (route) =>
    route.fulfill({ contentType: "text/html", body: "<title>Telegram</title><p>Start the bot</p>" }),
  );
  let answer: "not-configured" | "link" = "not-configured";
  await page.route(TELEGRAM_LINK, (route) =>
    answer === "not-configured"
      ? route.fulfill({
          status: 503,
          headers: CORS,
          json: { detail: "Telegram is not configured on this server", code: "TELEGRAM_NOT_CONFIGURED" },
        })
      : route.fulfill({ headers: CORS, json: { url: TELEGRAM_URL, expires_at: new Date(Date.now() + 900_000).toISOString() } }),
  );
  const user = uniqueUser();
  await devSignIn(page, user.email);
  await onboard(page, user);
  const telegram = row(page, "telegram");
  await expect(telegram).toContainText("Not linked");

  await test.step("a server without a bot says so", async () => {
    await telegram.getByRole("button", { name: "Link Telegram" }).click();
    await expect(telegram.getByTestId("telegram-error")).toHaveText("Telegram isn't set up on this server yet.");
  });

  await test.step("the link opens in a new tab and the card waits for /start", async () => {
    answer = "link";
    const popup = page.waitForEvent("popup");
    await telegram.getByRole("button", { name: "Link Telegram" }).click();
    await expect((await popup)).toHaveURL(TELEGRAM_URL);
    await expect(telegram.getByRole("link", { name: "Open Telegram" })).toHaveAttribute("href", TELEGRAM_URL);
    await expect(telegram.getByRole("status")).toContainText("Press Start in Telegram");
    await expect(telegram.getByTestId("telegram-error")).toHaveCount(0);
  });

  await test.step("once the chat is linked, the card shows it and offers it", async () => {
    linked = true;
    await expect(telegram).toContainText("Linked", { timeout: 10_000 });
    await expect(telegram).toContainText("Your Telegram chat @ada_e2e is linked.");
    await expect(page.getByLabel("Reminders and notices go to").getByRole("option")).toHaveText([
      "The channel I last wrote on",
      "WhatsApp",
      "Telegram",
      "SMS",
    ]);
  });
});
