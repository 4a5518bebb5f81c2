import { expect, test, type Page } from "@playwright/test";
import { API_URL, capture, devSignIn, onboard, sendFromWhatsApp, uniqueUser, whatsAppSimulator } from "./helpers";

// OpenClaw's gateway boots in ~15–20 s on an idle machine; provisioning, a model
// switch and a key change each restart it. Generous, for a busy 2-core box.
const READY_TIMEOUT = 150_000;

async function expectReady(page: Page) {
  await expect(page.getByRole("heading", { name: "Your assistant is ready" })).toBeVisible({ timeout: READY_TIMEOUT });
}

test("a new user signs up, pays, gets an assistant, uses it and deletes it", async ({ page }, testInfo) => {
  test.setTimeout(600_000);
  const user = uniqueUser();

  await test.step("signed-out users are sent to sign in", async () => {
    await page.goto("/dashboard");
    await expect(page).toHaveURL(/\/login\?next=%2Fdashboard$/);
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
    await capture(page, testInfo, "login");
  });

  await test.step("dev sign-in; a user without a phone goes to onboarding", async () => {
    await devSignIn(page, user.email);
    await expect(page).toHaveURL(/\/onboarding$/);
    await expect(page.getByRole("heading", { name: "Your WhatsApp number" })).toBeVisible();
  });

  await test.step("onboarding validates the number, then saves it", async () => {
    await page.getByLabel("Country").selectOption("US");
    await page.getByLabel("WhatsApp number").fill("12");
    await page.getByRole("button", { name: "Continue" }).click();
    // gateway-api's sentence, shown under the field.
    await expect(page.getByTestId("phone-help")).toHaveText(/^That number has 3 digits; with its country code/);
    await capture(page, testInfo, "onboarding-invalid");
    await page.getByLabel("WhatsApp number").fill(user.national);
    await expect(page.getByText(`We'll save ${user.phone}.`)).toBeVisible();
    await page.getByRole("button", { name: "Continue" }).click();
  });

  await test.step("the number is proven by sending the code from it on WhatsApp", async () => {
    await expect(page.getByRole("heading", { name: "Prove it's your number" })).toBeVisible();
    const code = (await page.getByTestId("phone-code").textContent())?.trim() ?? "";
    expect(code).toMatch(/^[0-9]{6}$/);
    await expect(page.getByRole("link", { name: "Open WhatsApp with the code" })).toHaveAttribute(
      "href",
      new RegExp(`^https://wa\\.me/[0-9]+\\?text=${code}$`),
    );
    await capture(page, testInfo, "onboarding-code");
    await sendFromWhatsApp(page, user.phone, code);
    await expect(page).toHaveURL(/\/dashboard$/, { timeout: 30_000 });
  });

  await test.step("before subscribing: no assistant, and the proof is the whole conversation", async () => {
    await expect(page.getByRole("heading", { name: "You don't have an assistant yet" })).toBeVisible();
    await capture(page, testInfo, "dashboard-no-assistant");
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Conversation" }).click();
    const proof = page.getByTestId("messages");
    await expect(proof.getByText(/^Your number is linked to your YourClaw account/)).toBeVisible({ timeout: 30_000 });
    await expect(proof.getByRole("listitem")).toHaveCount(2);
    await capture(page, testInfo, "conversation-proof");
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Billing" }).click();
    await expect(page.getByText("Not subscribed")).toBeVisible();
    await capture(page, testInfo, "billing-none");
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Assistant" }).click();
  });

  await test.step("subscribe: checkout on the Stripe stand-in, pay, come back", async () => {
    await page.getByRole("button", { name: "Subscribe — $20/month" }).click();
    await expect(page).toHaveURL(/\/_devsim\/stripe\/checkout\//);
    await page.getByRole("button", { name: /Pay \$20/ }).click();
    await expect(page).toHaveURL(/\/dashboard/);
  });

  await test.step("the assistant becomes READY by itself", async () => {
    await expect(page.getByRole("heading", { name: /Payment received|Setting up your assistant/ })).toBeVisible();
    await capture(page, testInfo, "dashboard-provisioning");
    await expectReady(page);
    await expect(page.getByRole("link", { name: "Open WhatsApp" })).toHaveAttribute("href", /^https:\/\/wa\.me\/14155238886/);
    await expect(page.getByRole("radio", { name: /Claude Sonnet 4\.5/ })).toHaveAttribute("aria-checked", "true");
    await capture(page, testInfo, "dashboard-ready");
  });

  await test.step("change the model", async () => {
    await page.getByRole("radio", { name: /Claude Haiku 4\.5/ }).click();
    await expect(page.getByRole("heading", { name: "Switching models" })).toBeVisible();
    await expectReady(page);
    await expect(page.getByRole("radio", { name: /Claude Haiku 4\.5/ })).toHaveAttribute("aria-checked", "true");
  });

  await test.step("add and remove an API key; only its last 4 are shown", async () => {
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "API keys" }).click();
    await expect(page.getByText("No keys yet")).toBeVisible();
    const key = `sk-ant-api03-${"e2eTestKey0123456789abcdef".repeat(2)}WXYZ`;
    await page.getByLabel("Provider").selectOption("ANTHROPIC");
    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", { name: "Save key" }).click();
    await expect(page.getByText("Anthropic key saved.")).toBeVisible();
    await expect(page.getByText("••••WXYZ")).toBeVisible();
    await expect(page.getByText(key)).toHaveCount(0);
    await capture(page, testInfo, "api-keys");
    // An invalid key: the API's own words.
    await page.getByLabel("Provider").selectOption("OPENAI");
    await page.getByLabel("API key").fill("not-a-key");
    await page.getByRole("button", { name: "Save key" }).click();
    await expect(page.getByRole("alert").filter({ hasText: "String should match pattern" })).toBeVisible();
    await page.getByRole("button", { name: "Remove Anthropic key" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Remove key" }).click();
    await expect(page.getByText("No keys yet")).toBeVisible();
  });

  await test.step("the assistant is READY again after the key changes", async () => {
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Assistant" }).click();
    await expectReady(page);
    await expect(page.getByRole("radio", { name: /Claude Haiku 4\.5/ })).toHaveAttribute("aria-checked", "true");
  });

  await test.step("a WhatsApp message shows in Conversation and Usage", async () => {
    // As a developer does it: the WhatsApp simulator page of the stand-ins.
    const simulator = await whatsAppSimulator(page, user.phone);
    await simulator.getByPlaceholder("Type a message").fill("Hello from the e2e test");
    await simulator.getByRole("button", { name: "Send" }).click();
    await expect(simulator.getByText(/^Echo: Hello from the e2e test/)).toBeVisible({ timeout: 90_000 });
    // The open chat reads the reply: the stand-in sends Twilio's "read" callback.
    await expect(simulator.getByText(/^read · /).last()).toBeVisible({ timeout: 30_000 });
    await capture(simulator, testInfo, "whatsapp-simulator");
    await simulator.close();
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Conversation" }).click();
    const messages = page.getByTestId("messages");
    await expect(messages.getByText("Hello from the e2e test", { exact: true })).toBeVisible({ timeout: 30_000 });
    // The reply came back from OpenClaw (through the LLM stand-in).
    await expect(messages.getByText(/^Echo: Hello from the e2e test/)).toBeVisible({ timeout: 90_000 });
    // Before it, the "your assistant is ready" WhatsApp template messaging sent,
    // and before that the code that proved the number and its confirmation.
    await expect(messages.getByRole("listitem")).toHaveCount(5);
    // WhatsApp's blue ticks: Twilio's read receipt reached the dashboard.
    const reply = messages.getByRole("listitem").filter({ hasText: "Echo: Hello from the e2e test" });
    await expect(reply.getByRole("img", { name: "Read" })).toBeVisible({ timeout: 30_000 });
    await expect(messages.getByRole("listitem").filter({ hasText: "Hello from the e2e test" }).first().getByTestId("delivery")).toHaveCount(0);
    await capture(page, testInfo, "conversation");
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Usage" }).click();
    const today = page.getByTestId("usage-today");
    // The code that proved the number and the hello.
    await expect(today.getByText("Messages you sent").locator("..")).toContainText("2");
    // The confirmation, the ready notification and the answer.
    await expect(today.getByText("Replies").locator("..")).toContainText("3");
    await expect(page.getByRole("img", { name: "Messages per day over the last 30 days" })).toBeVisible();
    // The turn's model call, metered by the LLM proxy, against the allowance.
    await expect(page.getByRole("heading", { name: "Model spend this month" })).toBeVisible();
    await expect(page.getByTestId("model-spend")).toContainText("of $8.00 (your plan's allowance)");
    await expect(page.getByTestId("model-tokens")).toContainText(/[1-9][\d,]* tokens in [1-9]/);
    await capture(page, testInfo, "usage");
  });

  await test.step("a lower monthly cap is set on Usage", async () => {
    await page.getByLabel("Monthly cap (USD)").fill("5");
    await page.getByRole("button", { name: "Save cap" }).click();
    await expect(page.getByText("Cap set to $5.00 a month.")).toBeVisible();
    await expect(page.getByTestId("model-spend")).toContainText("of $5.00 (your cap)");
    await page.getByLabel("Monthly cap (USD)").fill("50");
    await page.getByRole("button", { name: "Save cap" }).click();
    await expect(page.getByText(/at most the plan's allowance of \$8\.00/)).toBeVisible();
    await page.getByRole("button", { name: "Remove cap" }).click();
    await expect(page.getByText("Cap removed: your plan's allowance applies.")).toBeVisible();
  });

  await test.step("billing shows the active subscription", async () => {
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Billing" }).click();
    await expect(page.getByText("Active", { exact: true })).toBeVisible();
    await expect(page.getByRole("button", { name: "Manage billing" })).toBeVisible();
    await capture(page, testInfo, "billing");
    await page.getByRole("button", { name: "Manage billing" }).click();
    await expect(page).toHaveURL(/\/_devsim\/stripe\/portal\//);
    await page.goBack();
    await expect(page.getByText("Active", { exact: true })).toBeVisible();
  });

  await test.step("delete the assistant, with confirmation", async () => {
    await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Assistant" }).click();
    await expectReady(page);
    await page.getByRole("button", { name: "Delete assistant" }).click();
    const dialog = page.getByRole("dialog", { name: "Delete your assistant?" });
    await expect(dialog).toBeVisible();
    await capture(page, testInfo, "dashboard-confirm-delete");
    await dialog.getByRole("button", { name: "Delete assistant" }).click();
    await expect(page.getByRole("heading", { name: "You don't have an assistant yet" })).toBeVisible({ timeout: 90_000 });
    await expect(page.getByRole("button", { name: "Create my assistant" })).toBeVisible();
  });

  await test.step("the mobile menu and sign-out", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole("button", { name: "Open menu" }).click();
    const nav = page.locator("#mobile-nav");
    await expect(nav.getByRole("link", { name: "Usage" })).toBeVisible();
    await nav.getByRole("button", { name: /Account menu/ }).click();
    await nav.getByRole("button", { name: "Sign out" }).click();
    await expect(page).toHaveURL(/\/login$/);
  });
});

test("errors show the API's words; a second account can't take the same number", async ({ page, browser }) => {
  const first = uniqueUser();
  await devSignIn(page, first.email);
  await expect(page).toHaveURL(/\/onboarding$/);
  await page.getByLabel("WhatsApp number").fill(first.national);
  await page.getByRole("button", { name: "Continue" }).click();
  await sendFromWhatsApp(page, first.phone, (await page.getByTestId("phone-code").textContent())?.trim() ?? "");
  await expect(page).toHaveURL(/\/dashboard$/, { timeout: 30_000 });

  const other = await browser.newPage();
  await devSignIn(other, `other-${first.email}`);
  await expect(other).toHaveURL(/\/onboarding$/);
  // A number gateway-api cannot read gets its sentence (INVALID_PHONE), not a pattern.
  await other.getByLabel("WhatsApp number").fill("+0 415 555 0100");
  await other.getByRole("button", { name: "Continue" }).click();
  await expect(other.getByTestId("phone-help")).toHaveText(/^A country code never starts with 0/);
  await expect(other.getByLabel("WhatsApp number")).toHaveAttribute("aria-invalid", "true");
  // Typed the way people write it and normalised: the same answer as any number
  // (a code), so nothing tells this account the number is someone's.
  const [area, rest] = [first.national.slice(0, 3), first.national.slice(3)];
  await other.getByLabel("WhatsApp number").fill(`+1 (${area}) ${rest.slice(0, 3)}-${rest.slice(3)}`);
  await other.getByRole("button", { name: "Continue" }).click();
  await expect(other.getByRole("heading", { name: "Prove it's your number" })).toBeVisible();
  await expect(other.getByText(`from ${first.phone}`)).toBeVisible();
  // Its code never takes the number from its owner, even sent from the phone.
  await sendFromWhatsApp(page, first.phone, (await other.getByTestId("phone-code").textContent())?.trim() ?? "");
  await other.waitForTimeout(3_000);
  await expect(other).toHaveURL(/\/onboarding$/);
  await other.close();
});

test("Conversation shows WhatsApp's ticks for each delivery status", async ({ page }, testInfo) => {
  const user = uniqueUser();
  await devSignIn(page, user.email);
  await onboard(page, user);
  // One message in each state the API reports (its own tests cover how they come about).
  const statuses = ["pending", "sent", "delivered", "read", "failed"] as const;
  const at = (n: number) => new Date(Date.UTC(2026, 4, 1, 12, n)).toISOString();
  const messages = [
    { id: "00000000-0000-4000-8000-000000000010", direction: "INBOUND", body: "hi", status: "RECEIVED", delivery_status: null, num_media: 0, created_at: at(0) },
    ...statuses.map((s, n) => ({
      id: `00000000-0000-4000-8000-00000000000${n}`,
      direction: "OUTBOUND",
      body: `reply ${s}`,
      status: s === "failed" ? "FAILED" : s === "pending" ? "SENDING" : "SENT",
      delivery_status: s,
      num_media: 0,
      created_at: at(n + 1),
    })),
    { id: "00000000-0000-4000-8000-000000000011", direction: "OUTBOUND", body: "", status: "SKIPPED", delivery_status: null, num_media: 0, created_at: at(9) },
  ].reverse();
  await page.route(`${API_URL}/api/v1/messages**`, (route) => route.fulfill({ json: { messages, next_before: null } }));
  await page.getByRole("navigation", { name: "Dashboard" }).getByRole("link", { name: "Conversation" }).click();
  const list = page.getByTestId("messages");
  await expect(list.getByRole("listitem")).toHaveCount(6); // the skipped one is not shown
  const tick = (status: string) => list.getByRole("listitem").filter({ hasText: `reply ${status}` }).getByTestId("delivery");
  await expect(tick("pending")).toHaveAccessibleName("Sending");
  await expect(tick("sent")).toHaveAccessibleName("Sent");
  await expect(tick("sent")).toHaveText("✓");
  await expect(tick("delivered")).toHaveAccessibleName("Delivered");
  await expect(tick("delivered")).toHaveText("✓✓");
  await expect(tick("read")).toHaveAccessibleName("Read");
  await expect(tick("read")).toHaveText("✓✓");
  await expect(tick("read")).toHaveClass(/text-sky-400/);
  await expect(tick("delivered")).not.toHaveClass(/text-sky-400/);
  await expect(tick("failed")).toHaveAccessibleName("Not delivered");
  await expect(list.getByRole("listitem").filter({ hasText: "hi" }).getByTestId("delivery")).toHaveCount(0);
  await capture(page, testInfo, "conversation-ticks");
});

test("the offline backend has its own look, and the page recovers", async ({ page }, testInfo) => {
  const user = uniqueUser();
  await devSignIn(page, user.email);
  await onboard(page, user);
  // Cut the browser off from gateway-api, as when it is down or the network is.
  await page.route(`${API_URL}/**`, (route) => route.abort("connectionrefused"));
  await page.reload();
  await expect(page.getByRole("alert").filter({ hasText: "Can't reach YourClaw" })).toBeVisible();
  await capture(page, testInfo, "dashboard-offline");
  await page.unroute(`${API_URL}/**`);
  await expect(page.getByRole("heading", { name: "You don't have an assistant yet" })).toBeVisible({ timeout: 15_000 });
});
