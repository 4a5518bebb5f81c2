import "@fontsource-variable/inter";
import "./globals.css";
import type { Metadata, Viewport } from "next";

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

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body className="min-h-dvh font-sans">{children}</body>
    </html>
  );
}
