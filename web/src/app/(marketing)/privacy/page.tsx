import type { Metadata } from "next";
import { LegalPage } from "@/components/marketing/legal";

export const metadata: Metadata = { title: "Privacy" };

export default function Privacy() {
  return (
    <LegalPage title="Privacy policy" updated="November 2026">
      <p>
        YourClaw gives you a personal AI assistant on WhatsApp. This page explains what we keep to do that, and what we
        never do with it.
      </p>
      <h2>What we keep</h2>
      <ul>
        <li>Your Google account&apos;s email address, to sign you in.</li>
        <li>Your WhatsApp number, to route your messages to your assistant and no one else&apos;s.</li>
        <li>Your conversation with your assistant and daily usage counts, so you can see them in your dashboard.</li>
        <li>Your subscription status from Stripe. Card details stay with Stripe; we never see them.</li>
        <li>API keys you add, encrypted at rest. We only ever show their last four characters.</li>
      </ul>
      <h2>Your assistant</h2>
      <p>
        Each assistant runs in its own isolated container with its own files and memory, reachable only with its own
        secret token. Deleting your assistant removes its container and workspace.
      </p>
      <h2>Who we share with</h2>
      <p>
        The model provider you choose (Anthropic, OpenAI or Google) processes your messages to answer them; Twilio
        delivers WhatsApp messages; Stripe handles payments. We do not sell your data or use it for advertising.
      </p>
      <h2>Your choices</h2>
      <p>
        You can delete your assistant from the dashboard at any time, and ask us to delete your account and everything
        in it by emailing privacy@yourclaw.dev.
      </p>
    </LegalPage>
  );
}
