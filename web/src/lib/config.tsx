"use client";

import { createContext, useContext } from "react";

/** Settings read from the server's environment at request time (not baked in at
 * build time), so one build serves every environment. */
export type AppConfig = {
  /** gateway-api's public base URL, e.g. https://api.yourclaw.dev */
  apiUrl: string;
  /** Whether gateway-api offers email-only dev sign-in (local runs). */
  devLogin: boolean;
  supabaseUrl: string;
  supabaseAnonKey: string;
  /** The shared WhatsApp number users message, in E.164 form. */
  whatsappNumber: string;
};

const ConfigContext = createContext<AppConfig | null>(null);

export function ConfigProvider({ config, children }: { config: AppConfig; children: React.ReactNode }) {
  return <ConfigContext.Provider value={config}>{children}</ConfigContext.Provider>;
}

export function useConfig(): AppConfig {
  const config = useContext(ConfigContext);
  if (config === null) throw new Error("useConfig outside ConfigProvider");
  return config;
}
