import type { AppConfig } from "./config";

function origin(url: string): string | null {
  try {
    return url ? new URL(url).origin : null;
  } catch {
    return null;
  }
}

/** The page's Content-Security-Policy. Scripts run only with this request's
 * nonce (Next.js puts it on its own scripts; 'strict-dynamic' lets them load
 * their chunks); the browser may call only this site, gateway-api and Supabase
 * (sign-in); no page of ours may be framed. */
export function contentSecurityPolicy(
  config: Pick<AppConfig, "apiUrl" | "supabaseUrl">,
  nonce: string,
  { dev = false }: { dev?: boolean } = {},
): string {
  const connect = ["'self'", origin(config.apiUrl), origin(config.supabaseUrl)].filter(Boolean);
  // `next dev` only: React's debugging uses eval, and hot reload a websocket.
  if (dev) connect.push("ws:");
  return [
    "default-src 'self'",
    `script-src 'self' 'nonce-${nonce}' 'strict-dynamic'${dev ? " 'unsafe-eval'" : ""}`,
    // React sets style attributes, which a nonce cannot cover; styles cannot run code.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    `connect-src ${[...new Set(connect)].join(" ")}`,
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}
