import { defineConfig, devices } from "@playwright/test";
import path from "node:path";

// The e2e suite runs against the real local stack (`yourclaw-up`: gateway-api,
// billing + the Stripe stand-in, provisioner + host-agent with real OpenClaw,
// messaging, and this app's production build), isolated from a developer's
// `make up` by its own data dir and ports. E2E_REUSE=1 tests a stack that is
// already running on those ports instead.
export const WEB_PORT = Number(process.env.E2E_WEB_PORT ?? 13000);
export const API_PORT = Number(process.env.E2E_API_PORT ?? 18000);
export const DEVSIM_PORT = Number(process.env.E2E_DEVSIM_PORT ?? 18900);
// The Telegram stand-in (the Bot API, its dev bot's webhook at gateway-api).
export const TELEGRAM_SIM_PORT = Number(process.env.E2E_TELEGRAM_SIM_PORT ?? DEVSIM_PORT + 1);
const ROOT = path.resolve(__dirname, "..");
const DATA_DIR = process.env.E2E_DATA_DIR ?? path.join(ROOT, "web", ".e2e-stack");
// Google sign-in goes to Supabase, which the tests stand in for (offline).
export const SUPABASE_URL = "http://127.0.0.1:54321";
// Our SMS number in the e2e stack.
export const SMS_NUMBER = "+15550100999";
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export default defineConfig({
  testDir: "./e2e",
  outputDir: "./test-results",
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  retries: 0,
  // Generous: the stack shares 2 cores with OpenClaw gateways booting.
  expect: { timeout: 30_000 },
  timeout: 90_000,
  reporter: [["list"], ["html", { open: "never", outputFolder: "playwright-report" }]],
  use: {
    baseURL: `http://127.0.0.1:${WEB_PORT}`,
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: CHROMIUM,
      // No internet here: keep Chromium from phoning home.
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
    },
  },
  projects: [{ name: "chromium", use: { ...devices["Desktop Chrome"], viewport: { width: 1280, height: 800 } } }],
  webServer: process.env.E2E_REUSE
    ? undefined
    : {
        // A fresh stack each run: a new database, so every test user is new.
        // Its output goes to <data dir>/stack.log, for when a test fails.
        command: `rm -rf "${DATA_DIR}" && mkdir -p "${DATA_DIR}" && .tools/bin/uv run --frozen --no-sync yourclaw-up > "${DATA_DIR}/stack.log" 2>&1`,
        cwd: ROOT,
        url: `http://127.0.0.1:${WEB_PORT}/`,
        env: {
          YOURCLAW_DATA_DIR: DATA_DIR,
          API_PORT: String(API_PORT),
          DEVSIM_PORT: String(DEVSIM_PORT),
          TELEGRAM_SIM_PORT: String(TELEGRAM_SIM_PORT),
          WEB_PORT: String(WEB_PORT),
          // Its own LLM proxy port and tenant network (with its own firewall
          // chains), beside a developer's `make up`.
          LLM_PROXY_PORT: process.env.E2E_LLM_PROXY_PORT ?? "18790",
          TENANT_NETWORK: "yourclaw-e2e",
          TENANT_BRIDGE: "yc-e2e",
          SUPABASE_URL,
          SUPABASE_ANON_KEY: "e2e-anon-key",
          LOG_LEVEL: "INFO",
          // Dev sign-in and the stand-ins refuse to start without it.
          YOURCLAW_ENV: "dev",
          // WhatsApp for US numbers only (the tests' +1 555 users), so a number
          // from elsewhere shows the dashboard without it (channels.spec.ts),
          // and SMS on, at a number of the 555 range.
          WHATSAPP_ALLOWED_COUNTRIES: "US",
          TWILIO_SMS_NUMBER: SMS_NUMBER,
        },
        reuseExistingServer: false,
        timeout: 180_000,
        stdout: "ignore",
        stderr: "pipe",
        // SIGTERM lets yourclaw-up stop its OpenClaw gateways and services.
        gracefulShutdown: { signal: "SIGTERM", timeout: 60_000 },
      },
});
