"use client";

import type { AppConfig } from "./config";
import { supabase } from "./supabase";

const DEV_TOKEN_KEY = "yourclaw.devToken";

type DevToken = { token: string; expiresAt: number };

function readDevToken(): DevToken | null {
  try {
    const raw = window.localStorage.getItem(DEV_TOKEN_KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as DevToken;
    if (typeof parsed.token !== "string" || parsed.expiresAt < Date.now()) {
      window.localStorage.removeItem(DEV_TOKEN_KEY);
      return null;
    }
    return parsed;
  } catch {
    return null;
  }
}

export function storeDevToken(token: string, expiresInSeconds: number) {
  const value: DevToken = { token, expiresAt: Date.now() + expiresInSeconds * 1000 };
  window.localStorage.setItem(DEV_TOKEN_KEY, JSON.stringify(value));
}

/** The bearer token for gateway-api: a dev sign-in first, else the Supabase session. */
export async function getAccessToken(config: AppConfig): Promise<string | null> {
  const dev = readDevToken();
  if (dev) return dev.token;
  const client = supabase(config);
  if (!client) return null;
  const { data } = await client.auth.getSession();
  return data.session?.access_token ?? null;
}

export async function signOut(config: AppConfig) {
  window.localStorage.removeItem(DEV_TOKEN_KEY);
  const client = supabase(config);
  if (client) await client.auth.signOut().catch(() => undefined);
}

export function clearDevToken() {
  window.localStorage.removeItem(DEV_TOKEN_KEY);
}
