import type { Metadata } from "next";
import { Faq, PricingCard } from "@/components/marketing/sections";

export const metadata: Metadata = { title: "Pricing" };

const rows = [
  ["Setup time", "About 80 minutes", "About 2 minutes"],
  ["Server and updates", "Yours to run", "Included"],
  ["WhatsApp number", "Apply for your own", "Included"],
  ["AI usage", "Pay per token", "Included (or bring your keys)"],
  ["Monthly cost", "Server + API bills", "$20"],
] as const;

export default function Pricing() {
  return (
    <>
      <section className="mx-auto max-w-6xl px-4 pt-16 sm:px-6">
        <h1 className="text-center text-4xl font-semibold tracking-tight text-white sm:text-5xl">One plan, $20 a month</h1>
        <p className="mx-auto mt-4 max-w-2xl text-center text-zinc-400">
          Everything your assistant can do, with no credits to count and nothing to install.
        </p>
        <div className="mt-12">
          <PricingCard />
        </div>
      </section>
      <section aria-labelledby="compare-table" className="mx-auto max-w-3xl px-4 pt-20 sm:px-6">
        <h2 id="compare-table" className="text-center text-2xl font-semibold text-white">YourClaw or do it yourself</h2>
        <div className="mt-8 overflow-x-auto rounded-2xl ring-1 ring-white/10">
          <table className="w-full text-left text-sm">
            <thead className="bg-ink-900 text-zinc-300">
              <tr>
                <th scope="col" className="px-4 py-3 font-medium"><span className="sr-only">Aspect</span></th>
                <th scope="col" className="px-4 py-3 font-medium">Do it yourself</th>
                <th scope="col" className="px-4 py-3 font-medium text-brand-300">YourClaw</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-white/5">
              {rows.map(([label, diy, us]) => (
                <tr key={label}>
                  <th scope="row" className="px-4 py-3 font-medium text-zinc-200">{label}</th>
                  <td className="px-4 py-3 text-zinc-400">{diy}</td>
                  <td className="px-4 py-3 text-zinc-100">{us}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <Faq />
    </>
  );
}
