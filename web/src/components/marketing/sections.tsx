import { ButtonLink } from "@/components/ui";

const diySteps = [
  ["Rent and secure a server", 20],
  ["Install Node, OpenClaw and a browser", 15],
  ["Get API keys from an LLM provider", 10],
  ["Set up a WhatsApp Business number", 20],
  ["Wire webhooks, TLS and restarts", 15],
] as const;

export function TimeComparison() {
  const total = diySteps.reduce((sum, [, minutes]) => sum + minutes, 0);
  return (
    <section aria-labelledby="compare-title" className="mx-auto max-w-6xl px-4 py-20 sm:px-6">
      <h2 id="compare-title" className="text-center text-3xl font-semibold tracking-tight text-white sm:text-4xl">
        {total} minutes of setup, or 2
      </h2>
      <p className="mx-auto mt-3 max-w-2xl text-center text-zinc-400">
        You could run an OpenClaw agent yourself. Then you&apos;d also keep it patched, online and paid for.
      </p>
      <div className="mt-10 grid gap-6 md:grid-cols-2">
        <div className="rounded-2xl bg-ink-900 p-6 ring-1 ring-white/10">
          <h3 className="font-semibold text-zinc-200">Do it yourself</h3>
          <ul className="mt-4 space-y-3 text-sm">
            {diySteps.map(([step, minutes]) => (
              <li key={step} className="flex justify-between gap-4 text-zinc-400">
                <span>{step}</span>
                <span className="tabular-nums text-zinc-300">{minutes} min</span>
              </li>
            ))}
          </ul>
          <p className="mt-5 border-t border-white/10 pt-4 text-sm text-zinc-300">
            <span className="font-semibold text-white">{total} minutes</span>, then updates and outages are yours to handle.
          </p>
        </div>
        <div className="rounded-2xl bg-brand-400/10 p-6 ring-1 ring-brand-400/40">
          <h3 className="font-semibold text-brand-300">With YourClaw</h3>
          <ul className="mt-4 space-y-3 text-sm text-zinc-200">
            <li className="flex justify-between gap-4"><span>Sign in with Google</span><span className="tabular-nums">20 s</span></li>
            <li className="flex justify-between gap-4"><span>Enter your WhatsApp number</span><span className="tabular-nums">20 s</span></li>
            <li className="flex justify-between gap-4"><span>Subscribe</span><span className="tabular-nums">40 s</span></li>
            <li className="flex justify-between gap-4"><span>Say hi on WhatsApp</span><span className="tabular-nums">40 s</span></li>
          </ul>
          <p className="mt-5 border-t border-brand-400/30 pt-4 text-sm text-zinc-200">
            <span className="font-semibold text-white">2 minutes</span>. We run, update and watch it for you.
          </p>
        </div>
      </div>
    </section>
  );
}

const features = [
  { title: "Searches the web", text: "Looks things up, reads pages and fills in the details for you." },
  { title: "Messages you first", text: "Ask for a reminder or a daily summary and it arrives on WhatsApp by itself, on time." },
  { title: "Reads your photos", text: "Send a picture of a receipt, a sign or a screenshot and ask about it." },
  { title: "Runs code", text: "Crunches numbers, converts files and automates small chores in its own sandbox." },
  { title: "Remembers", text: "Your assistant keeps its memory between conversations, so context carries over." },
  { title: "Your choice of model", text: "Claude, GPT-4o or Gemini: switch in the dashboard, or bring your own API keys." },
] as const;

export function Features() {
  return (
    <section aria-labelledby="features-title" className="mx-auto max-w-6xl px-4 py-20 sm:px-6">
      <h2 id="features-title" className="text-center text-3xl font-semibold tracking-tight text-white sm:text-4xl">
        What your assistant does
      </h2>
      <ul className="mt-10 grid gap-4 sm:grid-cols-2 lg:grid-cols-3">
        {features.map((f) => (
          <li key={f.title} className="rounded-2xl bg-ink-900 p-6 ring-1 ring-white/10">
            <h3 className="font-semibold text-white">{f.title}</h3>
            <p className="mt-2 text-sm text-zinc-400">{f.text}</p>
          </li>
        ))}
      </ul>
    </section>
  );
}

export const included = [
  "Your own OpenClaw agent in an isolated container",
  "Unlimited conversations on WhatsApp (fair-use limits)",
  "Claude, GPT-4o or Gemini — switch any time",
  "AI usage included, or bring your own API keys",
  "Web browsing, files, code and memory",
  "Cancel any time from the dashboard",
];

export function PricingCard() {
  return (
    <div className="mx-auto max-w-md rounded-3xl bg-ink-900 p-8 ring-1 ring-brand-400/40">
      <h3 className="text-lg font-semibold text-brand-300">YourClaw Pro</h3>
      <p className="mt-4 flex items-baseline gap-1">
        <span className="text-5xl font-semibold tracking-tight text-white">$20</span>
        <span className="text-zinc-400">/month</span>
      </p>
      <p className="mt-2 text-sm text-zinc-400">One plan. Everything included. No credits to count.</p>
      <ul className="mt-6 space-y-3 text-sm text-zinc-200">
        {included.map((item) => (
          <li key={item} className="flex gap-3">
            <span aria-hidden="true" className="text-brand-400">✓</span>
            {item}
          </li>
        ))}
      </ul>
      <ButtonLink href="/login" className="mt-8 w-full">
        Get your assistant
      </ButtonLink>
    </div>
  );
}

const faq = [
  ["Do I need to install anything?", "No. You message your assistant on WhatsApp, the app you already have. Setup happens in your browser in about two minutes."],
  ["What is it powered by?", "Each assistant is its own OpenClaw agent, running in an isolated container that only you can talk to. You pick the model: Claude, GPT-4o or Gemini."],
  ["Can I use my own API keys?", "Yes. Add an Anthropic, OpenAI or Google key in the dashboard and your assistant uses it. We store it encrypted and only ever show its last four characters."],
  ["What does it cost?", "$20 a month, billed by Stripe. AI usage is included within fair-use limits. Cancel any time; your assistant stops at the end of the period."],
  ["Who can see my messages?", "Your assistant runs in its own container. We keep your conversation so you can see it in the dashboard, and never sell it. See the privacy policy."],
  ["Why WhatsApp?", "Because it is where you already are. No new app to install, and it works the same on your phone and your laptop."],
] as const;

export function Faq() {
  return (
    <section aria-labelledby="faq-title" className="mx-auto max-w-3xl px-4 py-20 sm:px-6">
      <h2 id="faq-title" className="text-center text-3xl font-semibold tracking-tight text-white sm:text-4xl">
        Questions
      </h2>
      <div className="mt-10 divide-y divide-white/10 rounded-2xl bg-ink-900 ring-1 ring-white/10">
        {faq.map(([q, a]) => (
          <details key={q} className="group px-6 py-4">
            <summary className="flex cursor-pointer list-none items-center justify-between gap-4 font-medium text-white">
              {q}
              <span aria-hidden="true" className="text-zinc-400 transition-transform group-open:rotate-45">+</span>
            </summary>
            <p className="mt-3 text-sm text-zinc-400">{a}</p>
          </details>
        ))}
      </div>
    </section>
  );
}
