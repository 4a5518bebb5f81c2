"use client";

import type { AppConfig } from "./config";
import { getAccessToken } from "./auth";

/** An answer from gateway-api that was not a success: its `detail` is for people. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly code: string | null,
  ) {
    super(detail);
    this.name = "ApiError";
  }
}

/** gateway-api could not be reached at all (down, or the network is). */
export class OfflineError extends Error {
  constructor() {
    super("We can't reach YourClaw's servers right now. Check your connection; we'll keep trying.");
    this.name = "OfflineError";
  }
}

export class SignedOutError extends Error {
  constructor() {
    super("You are signed out.");
    this.name = "SignedOutError";
  }
}

type Options = { method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE"; body?: unknown; idempotencyKey?: string; signal?: AbortSignal };

function detailText(detail: unknown): string {
  if (typeof detail === "string") return detail;
  // FastAPI validation errors: a list of {loc, msg}.
  if (Array.isArray(detail)) {
    return detail
      .map((item) => (item && typeof item === "object" && "msg" in item ? String((item as { msg: unknown }).msg) : String(item)))
      .join("; ");
  }
  return "Something went wrong. Please try again.";
}

export async function api<T>(config: AppConfig, path: string, options: Options = {}): Promise<T> {
  const token = await getAccessToken(config);
  if (!token) throw new SignedOutError();
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
  let response: Response;
  try {
    response = await fetch(`${config.apiUrl}/api/v1${path}`, {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
      cache: "no-store",
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new OfflineError();
  }
  if (response.status === 204) return undefined as T;
  let payload: unknown = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const body = (payload ?? {}) as { detail?: unknown; code?: unknown };
    if (response.status === 401) throw new SignedOutError();
    if (response.status >= 502 && payload === null) throw new OfflineError();
    throw new ApiError(response.status, detailText(body.detail), typeof body.code === "string" ? body.code : null);
  }
  return payload as T;
}

/** Sign in with just an email (local runs: gateway-api's DEV_LOGIN_ENABLED). */
export async function devLogin(config: AppConfig, email: string): Promise<{ access_token: string; expires_in: number }> {
  let response: Response;
  try {
    response = await fetch(`${config.apiUrl}/api/v1/dev/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email }),
    });
  } catch {
    throw new OfflineError();
  }
  const payload = (await response.json().catch(() => null)) as { detail?: unknown; code?: unknown; access_token?: string; expires_in?: number } | null;
  if (!response.ok || !payload?.access_token) {
    throw new ApiError(response.status, detailText(payload?.detail), typeof payload?.code === "string" ? payload.code : null);
  }
  return { access_token: payload.access_token, expires_in: payload.expires_in ?? 3600 };
}

export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}
