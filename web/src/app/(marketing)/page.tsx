import { ButtonLink } from "@/components/ui";
import { PhoneMockup } from "@/components/marketing/phone-mockup";
import { Faq, Features, PricingCard, TimeComparison } from "@/components/marketing/sections";

export default function Home() {
  return (
    <>
      <section className="relative overflow-hidden">
        <div aria-hidden="true" className="pointer-events-none absolute inset-x-0 -top-40 h-[36rem] bg-[radial-gradient(ellipse_at_top,oklch(0.7_0.17_160/0.25),transparent_60%)]" />
        <div className="relative mx-auto grid max-w-6xl items-center gap-12 px-4 pb-16 pt-16 sm:px-6 md:grid-cols-2 md:pt-24">
          <div>
            <p className="inline-flex rounded-full bg-white/5 px-3 py-1 text-xs font-medium text-brand-300 ring-1 ring-white/10">
              Personal AI agent · on WhatsApp
            </p>
            <h1 className="mt-5 text-4xl font-semibold tracking-tight text-white sm:text-5xl lg:text-6xl">
              Your always-on AI assistant on WhatsApp.
            </h1>
            <p className="mt-5 text-lg text-zinc-300 sm:text-xl">
              Watches, notifies, acts — while you sleep.
            </p>
            <p className="mt-3 max-w-xl text-zinc-400">
              A personal agent that browses, writes, remembers and messages you when something happens. No setup, no app to
              install: just WhatsApp.
            </p>
            <div className="mt-8 flex flex-wrap items-center gap-3">
              <ButtonLink href="/login" className="px-6 py-3 text-base">
                Get started — $20/month
              </ButtonLink>
              <ButtonLink href="/pricing" variant="ghost" className="px-4 py-3 text-base">
                See pricing
              </ButtonLink>
            </div>
          </div>
          <PhoneMockup />
        </div>
      </section>
      <TimeComparison />
      <Features />
      <section aria-labelledby="pricing-title" className="mx-auto max-w-6xl px-4 py-20 sm:px-6">
        <h2 id="pricing-title" className="mb-10 text-center text-3xl font-semibold tracking-tight text-white sm:text-4xl">
          Simple pricing
        </h2>
        <PricingCard />
      </section>
      <Faq />
    </>
  );
}
