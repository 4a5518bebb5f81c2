import type { Metadata } from "next";
import { LegalPage } from "@/components/marketing/legal";

export const metadata: Metadata = { title: "Terms" };

export default function Terms() {
  return (
    <LegalPage title="Terms of service" updated="November 2026">
      <p>By using YourClaw you agree to these terms. They are short on purpose.</p>
      <h2>The service</h2>
      <p>
        YourClaw runs a personal AI assistant for you and connects it to WhatsApp. AI can be wrong: check anything
        important before you rely on it.
      </p>
      <h2>Subscription</h2>
      <ul>
        <li>YourClaw Pro costs $20 per month, billed in advance through Stripe.</li>
        <li>You can cancel any time from the dashboard; the service runs until the end of the paid period.</li>
        <li>AI usage is included within fair-use limits that keep the service fast for everyone.</li>
      </ul>
      <h2>Acceptable use</h2>
      <p>
        Don&apos;t use your assistant to break the law, to spam, or to attack other systems. We may suspend assistants
        that do.
      </p>
      <h2>Liability</h2>
      <p>
        The service is provided as is. To the extent the law allows, our liability is limited to what you paid us in the
        last three months.
      </p>
    </LegalPage>
  );
}
