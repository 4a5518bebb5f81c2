"use client";

import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { AppConfig } from "./config";

let client: SupabaseClient | null = null;

/** The browser's Supabase client (auth only: data goes through gateway-api), or
 * null when this server has no Supabase project configured. */
export function supabase(config: AppConfig): SupabaseClient | null {
  if (!config.supabaseUrl || !config.supabaseAnonKey || typeof window === "undefined") return null;
  client ??= createClient(config.supabaseUrl, config.supabaseAnonKey, {
    auth: { flowType: "pkce", persistSession: true, detectSessionInUrl: true, autoRefreshToken: true },
  });
  return client;
}
