"use client";

import { useState } from "react";
import { api } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { formatDate, formatNumber, formatUsd } from "@/lib/format";
import type { LlmSpend } from "@/lib/types";
import { Button, Card, Spinner } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

/** What counts against the limit: the user's own cap counts every call, the
 * plan's allowance only those paid with YourClaw's keys (as llm-proxy does). */
function limitOf(llm: LlmSpend): { spent: number; limit: number; name: string } {
  if (llm.cap_usd !== null && llm.cap_usd <= llm.allowance_usd) {
    return { spent: llm.total_cost_usd, limit: llm.cap_usd, name: "your cap" };
  }
  return { spent: llm.spent_usd, limit: llm.allowance_usd, name: "your plan's allowance" };
}

/** This month's model spend against the allowance, and the user's own cap. */
export function ModelSpend({ llm, onChange }: { llm: LlmSpend; onChange: () => Promise<void> }) {
  const config = useConfig();
  const [cap, setCap] = useState(llm.cap_usd === null ? "" : llm.cap_usd.toFixed(2));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const { spent, limit, name } = limitOf(llm);
  const share = limit > 0 ? Math.min(100, (100 * spent) / limit) : 100;
  const tokens = llm.input_tokens + llm.output_tokens + llm.cache_read_tokens + llm.cache_write_tokens;

  async function save(value: number | null) {
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const saved = await api<LlmSpend>(config, "/usage/cap", { method: "PUT", body: { cap_usd: value } });
      setCap(saved.cap_usd === null ? "" : saved.cap_usd.toFixed(2));
      setNotice(saved.cap_usd === null ? "Cap removed: your plan's allowance applies." : `Cap set to ${formatUsd(saved.cap_usd)} a month.`);
      await onChange();
    } catch (e) {
      setError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      setBusy(false);
    }
  }

  return (
    <Card aria-labelledby="spend-title">
      <div className="flex flex-wrap items-baseline justify-between gap-2">
        <h2 id="spend-title" className="text-lg font-semibold text-white">Model spend this month</h2>
        <p className="text-sm text-zinc-400">Renews {formatDate(llm.resets_at)}</p>
      </div>
      <p className="mt-4 text-3xl font-semibold tabular-nums text-white" data-testid="model-spend">
        {formatUsd(spent)} <span className="text-base font-normal text-zinc-400">of {formatUsd(limit)} ({name})</span>
      </p>
      <div
        className="mt-3 h-2 w-full overflow-hidden rounded-full bg-white/10"
        role="progressbar"
        aria-label="Share of this month's limit spent"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Math.round(share)}
      >
        <div className={`h-full ${share >= 80 ? "bg-amber-400" : "bg-brand-400"}`} style={{ width: `${share}%` }} />
      </div>
      <p className="mt-3 text-sm text-zinc-400" data-testid="model-tokens">
        {formatNumber(tokens)} tokens in {formatNumber(llm.calls)} model calls
        {llm.cache_read_tokens ? `, ${formatNumber(llm.cache_read_tokens)} read from cache` : ""}
        {llm.total_cost_usd > llm.spent_usd ? ` · ${formatUsd(llm.total_cost_usd - llm.spent_usd)} on your own keys` : ""}
      </p>
      {notice ? <p role="status" className="mt-4 rounded-xl bg-emerald-400/10 px-4 py-3 text-sm text-emerald-200 ring-1 ring-emerald-400/30">{notice}</p> : null}
      {error ? <div className="mt-4"><ErrorNotice error={error} /></div> : null}
      <form
        className="mt-6 flex flex-wrap items-end gap-3"
        onSubmit={(e) => {
          e.preventDefault();
          void save(cap.trim() === "" ? null : Number(cap));
        }}
      >
        <div>
          <label htmlFor="cap" className="block text-sm text-zinc-300">Monthly cap (USD)</label>
          <input
            id="cap"
            type="number"
            inputMode="decimal"
            min={0}
            step={0.01}
            value={cap}
            onChange={(e) => setCap(e.target.value)}
            placeholder={llm.allowance_usd.toFixed(2)}
            className="mt-1 w-40 rounded-lg bg-ink-950 px-3 py-2 tabular-nums text-zinc-100 ring-1 ring-white/15 placeholder:text-zinc-500"
          />
        </div>
        <Button type="submit" disabled={busy}>
          {busy ? <Spinner /> : null}Save cap
        </Button>
        {llm.cap_usd !== null ? (
          <Button type="button" variant="secondary" disabled={busy} onClick={() => void save(null)}>
            Remove cap
          </Button>
        ) : null}
      </form>
      <p className="mt-3 text-xs text-zinc-400">
        Optional, up to {formatUsd(llm.allowance_usd)}. It counts calls paid with your own API keys too. At 80% we message you
        on WhatsApp once; at the limit your assistant pauses until the month renews.
      </p>
    </Card>
  );
}
