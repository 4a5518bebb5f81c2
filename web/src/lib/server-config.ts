import type { AppConfig } from "./config";

const truthy = (value: string | undefined) => ["1", "true", "yes", "on"].includes((value ?? "").toLowerCase());

/** The same variable names the services read from the shared .env. */
export function readConfig(): AppConfig {
  const env = process.env;
  return {
    apiUrl: (env.PUBLIC_BASE_URL || "http://127.0.0.1:8000").replace(/\/+$/, ""),
    devLogin: truthy(env.DEV_LOGIN_ENABLED),
    supabaseUrl: (env.SUPABASE_URL ?? "").replace(/\/+$/, ""),
    supabaseAnonKey: env.SUPABASE_ANON_KEY ?? "",
    whatsappNumber: (env.TWILIO_WHATSAPP_NUMBER ?? "").replace(/^whatsapp:/, ""),
  };
}
