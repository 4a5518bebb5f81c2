import "@fontsource-variable/inter";
import "./globals.css";
import type { Metadata, Viewport } from "next";
import { connection } from "next/server";

export const metadata: Metadata = {
  title: {
    default: "YourClaw — your always-on AI assistant on WhatsApp",
    template: "%s · YourClaw",
  },
  description:
    "Your always-on AI assistant on WhatsApp. Watches, notifies, acts — while you sleep. $20/month, no setup.",
  openGraph: {
    title: "YourClaw",
    description: "Your always-on AI assistant on WhatsApp. Watches, notifies, acts — while you sleep.",
    type: "website",
  },
};

export const viewport: Viewport = {
  themeColor: "#0b0d12",
  width: "device-width",
  initialScale: 1,
};

// Every page is rendered per request: the Content-Security-Policy (src/proxy.ts)
// lets scripts run only with the request's nonce, which a page prerendered at
// build time could not carry.
export default async function RootLayout({ children }: { children: React.ReactNode }) {
  await connection();
  return (
    <html lang="en">
      <body className="min-h-dvh font-sans">{children}</body>
    </html>
  );
}
