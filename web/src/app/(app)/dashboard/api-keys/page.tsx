"use client";

import { useState } from "react";
import { api } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { formatDate } from "@/lib/format";
import { PROVIDER_NAMES, type ApiKey, type Provider } from "@/lib/types";
import { useResource } from "@/lib/use-resource";
import { Button, Card, Empty, PageHeader, Skeleton, Spinner } from "@/components/ui";
import { ConfirmDialog } from "@/components/ui/confirm";
import { ErrorNotice } from "@/components/ui/states";

const PLACEHOLDERS: Record<Provider, string> = {
  ANTHROPIC: "sk-ant-api03-…",
  OPENAI: "sk-proj-…",
  GOOGLE: "AIza… or AQ.…",
};

export default function ApiKeysPage() {
  const config = useConfig();
  const keys = useResource<ApiKey[]>("/api-keys");
  const [provider, setProvider] = useState<Provider>("ANTHROPIC");
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [removing, setRemoving] = useState<Provider | null>(null);

  async function add(event: React.FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      await api(config, "/api-keys", { method: "POST", body: { provider, key: key.trim() } });
      setKey("");
      setNotice(`${PROVIDER_NAMES[provider]} key saved. A running assistant restarts to use it.`);
      await keys.reload();
    } catch (e) {
      setError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      setBusy(false);
    }
  }

  async function remove(target: Provider) {
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      await api(config, `/api-keys/${target}`, { method: "DELETE" });
      setNotice(`${PROVIDER_NAMES[target]} key removed. Your assistant uses YourClaw's shared key again.`);
      setRemoving(null);
      await keys.reload();
    } catch (e) {
      setRemoving(null);
      setError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      <PageHeader title="API keys" description="Optional: use your own provider keys instead of YourClaw's shared ones." />
      <div className="space-y-6">
        {notice ? <p role="status" className="rounded-xl bg-emerald-400/10 px-4 py-3 text-sm text-emerald-200 ring-1 ring-emerald-400/30">{notice}</p> : null}
        {error ? <ErrorNotice error={error} /> : null}
        <Card aria-labelledby="keys-title">
          <h2 id="keys-title" className="text-lg font-semibold text-white">Your keys</h2>
          <div className="mt-4">
            {keys.error ? (
              <ErrorNotice error={keys.error} onRetry={() => void keys.reload()} />
            ) : !keys.data ? (
              <div aria-busy="true" aria-label="Loading keys" className="space-y-3">
                <Skeleton className="h-12 w-full" />
                <Skeleton className="h-12 w-full" />
              </div>
            ) : keys.data.length === 0 ? (
              <Empty title="No keys yet">Your assistant uses YourClaw&apos;s shared keys. Add one below to use your own.</Empty>
            ) : (
              <ul className="divide-y divide-white/5">
                {keys.data.map((k) => (
                  <li key={k.provider} className="flex flex-wrap items-center justify-between gap-3 py-3">
                    <div>
                      <p className="font-medium text-white">{PROVIDER_NAMES[k.provider]}</p>
                      <p className="text-sm text-zinc-400">
                        <span className="font-mono" aria-label={`ending in ${k.key_last4}`}>••••{k.key_last4}</span> · added {formatDate(k.created_at)}
                      </p>
                    </div>
                    <Button variant="danger" onClick={() => setRemoving(k.provider)} disabled={busy} aria-label={`Remove ${PROVIDER_NAMES[k.provider]} key`}>
                      Remove
                    </Button>
                  </li>
                ))}
              </ul>
            )}
          </div>
        </Card>
        <Card aria-labelledby="add-title">
          <h2 id="add-title" className="text-lg font-semibold text-white">Add or replace a key</h2>
          <form onSubmit={(e) => void add(e)} className="mt-4 grid gap-4 sm:grid-cols-[12rem_1fr_auto] sm:items-end">
            <div>
              <label htmlFor="provider" className="block text-sm text-zinc-300">Provider</label>
              <select
                id="provider"
                value={provider}
                onChange={(e) => setProvider(e.target.value as Provider)}
                className="mt-1 w-full rounded-lg bg-ink-950 px-3 py-2 text-zinc-100 ring-1 ring-white/15"
              >
                {(Object.keys(PROVIDER_NAMES) as Provider[]).map((p) => (
                  <option key={p} value={p}>{PROVIDER_NAMES[p]}</option>
                ))}
              </select>
            </div>
            <div>
              <label htmlFor="api-key" className="block text-sm text-zinc-300">API key</label>
              <input
                id="api-key"
                type="password"
                autoComplete="off"
                spellCheck={false}
                required
                value={key}
                onChange={(e) => setKey(e.target.value)}
                placeholder={PLACEHOLDERS[provider]}
                className="mt-1 w-full rounded-lg bg-ink-950 px-3 py-2 font-mono text-zinc-100 ring-1 ring-white/15 placeholder:text-zinc-500"
              />
            </div>
            <Button type="submit" disabled={busy || !key.trim()}>
              {busy ? <Spinner /> : null}Save key
            </Button>
          </form>
          <p className="mt-3 text-xs text-zinc-400">Stored encrypted. We never show it again: only its last four characters.</p>
        </Card>
      </div>
      <ConfirmDialog
        open={removing !== null}
        title={`Remove your ${removing ? PROVIDER_NAMES[removing] : ""} key?`}
        confirmLabel="Remove key"
        busy={busy}
        onCancel={() => setRemoving(null)}
        onConfirm={() => removing && void remove(removing)}
      >
        Your assistant goes back to YourClaw&apos;s shared key for this provider.
      </ConfirmDialog>
    </>
  );
}
