"use client";

import { useState } from "react";
import { api, ApiError } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { formatDate } from "@/lib/format";
import type { Subscription } from "@/lib/types";
import { useResource } from "@/lib/use-resource";
import { Badge, Button, Card, PageHeader, Skeleton, Spinner } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

const STATUS: Record<Subscription["status"], { label: string; tone: "green" | "amber" | "red" | "zinc" }> = {
  ACTIVE: { label: "Active", tone: "green" },
  PAST_DUE: { label: "Payment due", tone: "amber" },
  CANCELED: { label: "Canceled", tone: "red" },
  NONE: { label: "Not subscribed", tone: "zinc" },
};

export default function BillingPage() {
  const config = useConfig();
  const subscription = useResource<Subscription>("/subscription");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);

  async function go(path: "/billing/portal" | "/checkout") {
    setBusy(true);
    setError(null);
    try {
      const body = await api<{ portal_url?: string; checkout_url?: string }>(config, path, { method: "POST" });
      window.location.assign(body.portal_url ?? body.checkout_url ?? "/dashboard");
    } catch (e) {
      setError(e instanceof ApiError && e.code === "NO_CUSTOMER" ? new Error("You haven't subscribed yet, so there is no billing to manage.") : e instanceof Error ? e : new Error(String(e)));
      setBusy(false);
    }
  }

  const sub = subscription.data;
  return (
    <>
      <PageHeader title="Billing" description="YourClaw Pro — $20/month, billed by Stripe." />
      <div className="space-y-6">
        {error ? <ErrorNotice error={error} /> : null}
        {subscription.error ? <ErrorNotice error={subscription.error} onRetry={() => void subscription.reload()} /> : null}
        <Card aria-labelledby="plan-title">
          <h2 id="plan-title" className="text-lg font-semibold text-white">Subscription</h2>
          {!sub && !subscription.error ? (
            <div aria-busy="true" aria-label="Loading subscription" className="mt-4 space-y-3">
              <Skeleton className="h-5 w-40" />
              <Skeleton className="h-5 w-64" />
            </div>
          ) : null}
          {sub ? (
            <>
              <dl className="mt-4 grid gap-4 sm:grid-cols-2">
                <div>
                  <dt className="text-sm text-zinc-400">Status</dt>
                  <dd className="mt-1"><Badge tone={STATUS[sub.status].tone}>{STATUS[sub.status].label}</Badge></dd>
                </div>
                <div>
                  <dt className="text-sm text-zinc-400">{sub.status === "CANCELED" ? "Ended" : "Renews on"}</dt>
                  <dd className="mt-1 text-zinc-100">{formatDate(sub.current_period_end)}</dd>
                </div>
              </dl>
              {sub.status === "PAST_DUE" ? (
                <p className="mt-4 text-sm text-amber-200">Your last payment didn&apos;t go through. Update your card to keep your assistant running.</p>
              ) : null}
              <div className="mt-6 flex flex-wrap gap-3">
                {sub.status === "NONE" || sub.status === "CANCELED" ? (
                  <Button onClick={() => void go("/checkout")} disabled={busy}>{busy ? <Spinner /> : null}Subscribe — $20/month</Button>
                ) : null}
                {sub.status !== "NONE" ? (
                  <Button variant={sub.status === "CANCELED" ? "secondary" : "primary"} onClick={() => void go("/billing/portal")} disabled={busy}>
                    {busy ? <Spinner /> : null}Manage billing
                  </Button>
                ) : null}
              </div>
              <p className="mt-3 text-xs text-zinc-400">Invoices, your card and cancellation are on Stripe&apos;s secure billing page.</p>
            </>
          ) : null}
        </Card>
      </div>
    </>
  );
}
