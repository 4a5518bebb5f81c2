"use client";

import { counted, formatNumber } from "@/lib/format";
import type { Usage, UsageDay } from "@/lib/types";
import { useResource } from "@/lib/use-resource";
import { Card, Empty, PageHeader, Skeleton } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";
import { ModelSpend } from "@/components/app/model-spend";

/** The last 30 UTC days, oldest first, with zeros where nothing happened. */
function last30(days: UsageDay[], today: string): UsageDay[] {
  const byDate = new Map(days.map((d) => [d.date, d]));
  const end = new Date(`${today}T00:00:00Z`);
  return Array.from({ length: 30 }, (_, i) => {
    const date = new Date(end.getTime() - (29 - i) * 86_400_000).toISOString().slice(0, 10);
    return byDate.get(date) ?? { date, inbound: 0, outbound: 0, tokens_in: 0, tokens_out: 0 };
  });
}

function Stat({ label, value, hint }: { label: string; value: number; hint?: string }) {
  return (
    <div className="rounded-xl bg-ink-950 p-4 ring-1 ring-white/10">
      <dt className="text-sm text-zinc-400">{label}</dt>
      <dd className="mt-1 text-3xl font-semibold tabular-nums text-white">{formatNumber(value)}</dd>
      {hint ? <dd className="mt-1 text-xs text-zinc-400">{hint}</dd> : null}
    </div>
  );
}

function Chart({ days }: { days: UsageDay[] }) {
  const max = Math.max(1, ...days.map((d) => d.inbound + d.outbound));
  const label = (d: UsageDay) =>
    new Date(`${d.date}T00:00:00Z`).toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
  return (
    <figure>
      <div className="flex h-40 items-end gap-[3px]" role="img" aria-label="Messages per day over the last 30 days">
        {days.map((d) => {
          const total = d.inbound + d.outbound;
          return (
            <div key={d.date} className="group relative flex h-full flex-1 flex-col justify-end" title={`${label(d)}: ${counted(total, "message")}`}>
              <div className="w-full rounded-t bg-brand-400/80 group-hover:bg-brand-300" style={{ height: `${(total / max) * 100}%`, minHeight: total ? 3 : 1 }} />
            </div>
          );
        })}
      </div>
      <figcaption className="mt-2 flex justify-between text-xs text-zinc-400">
        <span>{label(days[0])}</span>
        <span>Today</span>
      </figcaption>
      <table className="sr-only">
        <caption>Messages per day</caption>
        <thead><tr><th scope="col">Day</th><th scope="col">Messages</th></tr></thead>
        <tbody>
          {days.filter((d) => d.inbound + d.outbound > 0).map((d) => (
            <tr key={d.date}><td>{label(d)}</td><td>{d.inbound + d.outbound}</td></tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

export default function UsagePage() {
  const usage = useResource<Usage>("/usage", 10000);
  const u = usage.data;
  const tokensKnown = u ? u.last_30_days.tokens_in + u.last_30_days.tokens_out > 0 : false;
  return (
    <>
      <PageHeader title="Usage" description="Your assistant's model spend this month, and the messages between you (UTC days)." />
      <div className="space-y-6">
        {usage.error ? <ErrorNotice error={usage.error} onRetry={() => void usage.reload()} /> : null}
        {!u && !usage.error ? (
          <Card aria-busy="true" aria-label="Loading usage">
            <div className="grid gap-4 sm:grid-cols-3">
              {[0, 1, 2].map((i) => <Skeleton key={i} className="h-24 w-full" />)}
            </div>
            <Skeleton className="mt-6 h-40 w-full" />
          </Card>
        ) : null}
        {u ? (
          <>
            <ModelSpend llm={u.llm} onChange={usage.reload} />
            <Card aria-labelledby="today-title">
              <h2 id="today-title" className="text-lg font-semibold text-white">Today</h2>
              <dl className="mt-4 grid gap-4 sm:grid-cols-3" data-testid="usage-today">
                <Stat label="Messages you sent" value={u.today.inbound} />
                <Stat label="Replies" value={u.today.outbound} />
                <Stat label="Tokens" value={u.today.tokens_in + u.today.tokens_out} hint={tokensKnown ? "in + out" : "reported when the model returns usage"} />
              </dl>
            </Card>
            <Card aria-labelledby="month-title">
              <div className="flex flex-wrap items-baseline justify-between gap-2">
                <h2 id="month-title" className="text-lg font-semibold text-white">Last 30 days</h2>
                <p className="text-sm text-zinc-400" data-testid="usage-30d">
                  {counted(u.last_30_days.inbound + u.last_30_days.outbound, "message")}
                  {tokensKnown ? ` · ${counted(u.last_30_days.tokens_in + u.last_30_days.tokens_out, "token")}` : ""}
                </p>
              </div>
              <div className="mt-6">
                {u.days.length === 0 ? (
                  <Empty title="No messages yet">Say hi to your assistant on WhatsApp and your usage shows up here.</Empty>
                ) : (
                  <Chart days={last30(u.days, u.today.date)} />
                )}
              </div>
            </Card>
          </>
        ) : null}
      </div>
    </>
  );
}
