import type { NextConfig } from "next";

// Headers that do not depend on the environment; the Content-Security-Policy
// (with frame-ancestors) names gateway-api's URL, read at run time, so
// src/proxy.ts sets it per request.
const SECURITY_HEADERS = [
  // Browsers ignore it over plain http (local runs); behind TLS it pins https.
  { key: "Strict-Transport-Security", value: "max-age=63072000; includeSubDomains" },
  { key: "X-Content-Type-Options", value: "nosniff" },
  // Other sites see our origin, never a path or query (`?next=`, OAuth `?code=`).
  { key: "Referrer-Policy", value: "strict-origin-when-cross-origin" },
  // For browsers without CSP frame-ancestors.
  { key: "X-Frame-Options", value: "DENY" },
  { key: "Permissions-Policy", value: "camera=(), microphone=(), geolocation=(), payment=()" },
];

const nextConfig: NextConfig = {
  poweredByHeader: false,
  reactStrictMode: true,
  // Every page is rendered per request (the CSP nonce), and Next.js would then
  // stream the <title> after the page: a screen reader would announce a page
  // without one. Metadata in <head>, for every user agent.
  htmlLimitedBots: /.*/,
  async headers() {
    return [{ source: "/:path*", headers: SECURITY_HEADERS }];
  },
};

export default nextConfig;
