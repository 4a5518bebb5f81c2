"use client";

import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useEffect, useState } from "react";
import { api, ApiError, newIdempotencyKey } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { formatDate, waLink } from "@/lib/format";
import type { Assistant, Channels, Model, Subscription } from "@/lib/types";
import { PROVIDER_NAMES } from "@/lib/types";
import { useResource } from "@/lib/use-resource";
import { AssistantBadge } from "@/components/app/assistant-status";
import { ChannelsCard } from "@/components/app/channels-card";
import { Button, ButtonLink, Card, PageHeader, Skeleton, Spinner } from "@/components/ui";
import { ConfirmDialog } from "@/components/ui/confirm";
import { ErrorNotice } from "@/components/ui/states";

type Pending = { kind: "create" } | { kind: "delete" } | { kind: "model"; model: string } | null;

function AssistantPage() {
  const config = useConfig();
  const router = useRouter();
  const params = useSearchParams();
  const returnedFromCheckout = params.has("session_id");
  const [pending, setPending] = useState<Pending>(null);
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState<Error | null>(null);
  const [confirm, setConfirm] = useState<"delete" | "recreate" | null>(null);

  const [fastPoll, setFastPoll] = useState(returnedFromCheckout);
  // Back from checkout, billing and the provisioner start the assistant by
  // themselves; offer the button only if that takes unusually long.
  const [waitedLong, setWaitedLong] = useState(false);
  useEffect(() => {
    if (!returnedFromCheckout) return;
    const id = window.setTimeout(() => setWaitedLong(true), 20000);
    return () => window.clearTimeout(id);
  }, [returnedFromCheckout]);
  const assistant = useResource<Assistant>("/assistants", fastPoll ? 1500 : undefined);
  const subscription = useResource<Subscription>("/subscription", fastPoll ? 1500 : undefined);
  const models = useResource<Model[]>("/models");
  // Polled while a Telegram chat is being linked (the Channels card asks).
  const [channelsPoll, setChannelsPoll] = useState(false);
  const channels = useResource<Channels>("/channels", channelsPoll ? 3000 : undefined);
  // Until the channels are known, WhatsApp (the usual case).
  const whatsappAvailable = channels.data?.channels[0].available ?? true;

  const status = assistant.data?.status;
  const subscribed = subscription.data?.status === "ACTIVE" || subscription.data?.status === "PAST_DUE";

  // Keep polling while something is changing; stop once it settled.
  useEffect(() => {
    const a = assistant.data;
    if (!a) return;
    let settled = a.status !== "PROVISIONING";
    if (pending?.kind === "delete") settled = a.status === "NONE";
    if (pending?.kind === "create") settled = a.status === "READY" || a.status === "ERROR";
    if (pending?.kind === "model") settled = a.model === pending.model && (a.status === "READY" || a.status === "ERROR");
    if (returnedFromCheckout && !pending && (!subscribed || a.status === "NONE")) settled = false;
    if (settled && pending) setPending(null);
    setFastPoll(!settled);
  }, [assistant.data, pending, returnedFromCheckout, subscribed]);

  // Back from checkout with the assistant on its way: drop ?session_id from the URL.
  useEffect(() => {
    if (returnedFromCheckout && status && status !== "NONE") router.replace("/dashboard");
  }, [returnedFromCheckout, status, router]);

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setActionError(null);
    try {
      await action();
    } catch (e) {
      setActionError(e instanceof Error ? e : new Error(String(e)));
      setPending(null);
    } finally {
      setBusy(false);
    }
  }

  const checkout = () =>
    run(async () => {
      const { checkout_url } = await api<{ checkout_url: string }>(config, "/checkout", { method: "POST" });
      window.location.assign(checkout_url);
    });

  const create = () =>
    run(async () => {
      try {
        await api(config, "/assistants", { method: "POST", idempotencyKey: newIdempotencyKey() });
      } catch (e) {
        if (e instanceof ApiError && e.code === "SUBSCRIPTION_REQUIRED") {
          const { checkout_url } = await api<{ checkout_url: string }>(config, "/checkout", { method: "POST" });
          window.location.assign(checkout_url);
          return;
        }
        throw e;
      }
      setPending({ kind: "create" });
      setFastPoll(true);
      await assistant.reload();
    });

  const remove = () =>
    run(async () => {
      await api(config, "/assistants", { method: "DELETE", idempotencyKey: newIdempotencyKey() });
      setConfirm(null);
      setPending({ kind: "delete" });
      setFastPoll(true);
      await assistant.reload();
    });

  const changeModel = (model: string) =>
    run(async () => {
      await api(config, "/assistants", { method: "PATCH", body: { model }, idempotencyKey: newIdempotencyKey() });
      setPending({ kind: "model", model });
      setFastPoll(true);
      await assistant.reload();
    });

  const loadError = assistant.error ?? subscription.error;
  const loading = (assistant.loading && !assistant.data) || (subscription.loading && !subscription.data);

  return (
    <>
      <PageHeader title="Assistant" description="Your personal OpenClaw agent on WhatsApp.">
        {assistant.data ? <AssistantBadge status={pending?.kind === "delete" ? "DELETING" : assistant.data.status} /> : null}
      </PageHeader>
      <div className="space-y-6">
        {loadError ? <ErrorNotice error={loadError} onRetry={() => void Promise.all([assistant.reload(), subscription.reload()])} /> : null}
        {actionError ? <ErrorNotice error={actionError} /> : null}
        {loading ? (
          <Card aria-busy="true" aria-label="Loading your assistant">
            <Skeleton className="h-6 w-48" />
            <Skeleton className="mt-4 h-4 w-full max-w-md" />
            <Skeleton className="mt-2 h-4 w-2/3 max-w-sm" />
          </Card>
        ) : assistant.data && subscription.data ? (
          <>
            {/* Announces READY / ERROR when they arrive by polling. */}
            <div aria-live="polite">
            <StatusCard
              assistant={assistant.data}
              subscription={subscription.data}
              subscribed={subscribed}
              pending={pending}
              returnedFromCheckout={returnedFromCheckout}
              waitedLong={waitedLong}
              busy={busy}
              whatsappNumber={whatsappAvailable ? config.whatsappNumber : ""}
              onCheckout={() => void checkout()}
              onCreate={() => void create()}
              onRecreate={() => setConfirm("recreate")}
              onDelete={() => setConfirm("delete")}
            />
            </div>
            {assistant.data.status !== "NONE" && pending?.kind !== "delete" ? (
              <ModelPicker
                models={models.data}
                error={models.error}
                current={pending?.kind === "model" ? pending.model : assistant.data.model}
                disabled={busy || assistant.data.status === "PROVISIONING" || pending !== null}
                onPick={(m) => void changeModel(m)}
              />
            ) : null}
          </>
        ) : null}
        <ChannelsCard channels={channels} onWaitingForTelegram={setChannelsPoll} />
      </div>
      <ConfirmDialog
        open={confirm === "delete"}
        title="Delete your assistant?"
        confirmLabel="Delete assistant"
        busy={busy}
        onCancel={() => setConfirm(null)}
        onConfirm={() => void remove()}
      >
        Its container, files and memory are removed. Your subscription stays active and you can create a new assistant any
        time.
      </ConfirmDialog>
      <ConfirmDialog
        open={confirm === "recreate"}
        title="Re-create your assistant?"
        confirmLabel="Re-create"
        busy={busy}
        onCancel={() => setConfirm(null)}
        onConfirm={() => {
          setConfirm(null);
          void create();
        }}
      >
        Your assistant restarts with a fresh container. It is unavailable for about a minute.
      </ConfirmDialog>
    </>
  );
}

function StatusCard(props: {
  assistant: Assistant;
  subscription: Subscription;
  subscribed: boolean;
  pending: Pending;
  returnedFromCheckout: boolean;
  waitedLong: boolean;
  busy: boolean;
  whatsappNumber: string;
  onCheckout: () => void;
  onCreate: () => void;
  onRecreate: () => void;
  onDelete: () => void;
}) {
  const { assistant, subscribed, pending, busy } = props;
  if (pending?.kind === "delete") {
    return (
      <Card>
        <p role="status" className="flex items-center gap-3 text-zinc-200">
          <Spinner /> Deleting your assistant…
        </p>
      </Card>
    );
  }
  if (assistant.status === "NONE") {
    if (props.returnedFromCheckout && (!subscribed || !props.waitedLong)) {
      return (
        <Card>
          <h2 className="text-lg font-semibold text-white">Payment received — thank you!</h2>
          <p role="status" className="mt-2 flex items-center gap-3 text-zinc-300">
            <Spinner /> {subscribed ? "Starting your assistant…" : "Confirming your subscription…"}
          </p>
        </Card>
      );
    }
    return (
      <Card>
        <h2 className="text-lg font-semibold text-white">You don&apos;t have an assistant yet</h2>
        <p className="mt-2 max-w-prose text-sm text-zinc-400">
          {subscribed
            ? "Create it now: it takes about a minute, then you can message it on WhatsApp."
            : "Subscribe for $20/month and your assistant is created right after you pay."}
        </p>
        <div className="mt-5">
          {subscribed ? (
            <Button onClick={props.onCreate} disabled={busy}>
              {busy ? <Spinner /> : null}Create my assistant
            </Button>
          ) : (
            <Button onClick={props.onCheckout} disabled={busy}>
              {busy ? <Spinner /> : null}Subscribe — $20/month
            </Button>
          )}
        </div>
        {props.subscription.status === "CANCELED" ? (
          <p className="mt-4 text-sm text-amber-200">Your subscription was canceled. Subscribe again to get your assistant back.</p>
        ) : null}
      </Card>
    );
  }
  if (assistant.status === "PROVISIONING") {
    return (
      <Card>
        <h2 className="text-lg font-semibold text-white">
          {pending?.kind === "model" ? "Switching models" : "Setting up your assistant"}
        </h2>
        <p role="status" aria-live="polite" className="mt-2 flex items-center gap-3 text-zinc-300">
          <Spinner /> This usually takes under a minute. This page updates by itself.
        </p>
        <div aria-hidden="true" className="mt-5 h-1.5 overflow-hidden rounded-full bg-white/5">
          <div className="h-full w-1/3 animate-pulse rounded-full bg-brand-400" />
        </div>
      </Card>
    );
  }
  if (assistant.status === "ERROR") {
    return (
      <Card className="ring-red-400/30">
        <h2 className="text-lg font-semibold text-white">Your assistant couldn&apos;t start</h2>
        <p className="mt-2 text-sm text-red-200" data-testid="assistant-error">{assistant.last_error ?? "Something went wrong while setting it up."}</p>
        <div className="mt-5 flex flex-wrap gap-3">
          <Button onClick={props.onCreate} disabled={busy}>Try again</Button>
          <Button variant="danger" onClick={props.onDelete} disabled={busy}>Delete assistant</Button>
        </div>
      </Card>
    );
  }
  const number = props.whatsappNumber;
  const asleep = assistant.status === "SUSPENDED";
  return (
    <Card>
      <h2 className="text-lg font-semibold text-white">{asleep ? "Your assistant is asleep" : "Your assistant is ready"}</h2>
      {asleep ? (
        <p className="mt-2 max-w-prose text-sm text-zinc-300" data-testid="assistant-asleep">
          It&apos;s asleep, wakes when you write: your next message wakes it and gets its answer. Reminders still arrive on time.
        </p>
      ) : null}
      {assistant.last_error ? (
        <p className="mt-2 max-w-prose text-sm text-amber-200" data-testid="assistant-warning">{assistant.last_error}</p>
      ) : null}
      {number ? (
        <p className="mt-2 max-w-prose text-sm text-zinc-300">
          Message it on WhatsApp at <strong className="whitespace-nowrap text-white">{number}</strong>.
          Say hi first: WhatsApp lets it reply freely for 24 hours after your last message.
        </p>
      ) : (
        <p className="mt-2 max-w-prose text-sm text-zinc-300">Message it on any channel below.</p>
      )}
      <dl className="mt-4 grid gap-x-8 gap-y-2 text-sm sm:grid-cols-2">
        <div><dt className="inline text-zinc-400">Last change </dt><dd className="inline text-zinc-200">{formatDate(assistant.updated_at, true)}</dd></div>
        <div><dt className="inline text-zinc-400">Last message </dt><dd className="inline text-zinc-200">{formatDate(assistant.last_message_at, true)}</dd></div>
      </dl>
      <div className="mt-5 flex flex-wrap gap-3">
        {number ? (
          <a href={waLink(number, "Hi!")} target="_blank" rel="noreferrer" className="inline-flex items-center justify-center gap-2 rounded-lg bg-brand-400 px-4 py-2 text-sm font-semibold text-ink-950 hover:bg-brand-300">
            Open WhatsApp
          </a>
        ) : null}
        <ButtonLink href="/dashboard/conversation" variant="secondary">See conversation</ButtonLink>
        <Button variant="secondary" onClick={props.onRecreate} disabled={busy}>Re-create</Button>
        <Button variant="danger" onClick={props.onDelete} disabled={busy}>Delete assistant</Button>
      </div>
    </Card>
  );
}

function ModelPicker({ models, error, current, disabled, onPick }: { models: Model[] | undefined; error: Error | null; current: string; disabled: boolean; onPick: (id: string) => void }) {
  return (
    <Card aria-labelledby="model-title">
      <h2 id="model-title" className="text-lg font-semibold text-white">Model</h2>
      <p className="mt-1 text-sm text-zinc-400">Switching restarts your assistant with the new model; its memory stays.</p>
      {error ? <div className="mt-4"><ErrorNotice error={error} /></div> : null}
      {!models && !error ? (
        <div className="mt-4 grid gap-3 sm:grid-cols-2 lg:grid-cols-3">
          {[0, 1, 2].map((i) => <Skeleton key={i} className="h-20 w-full" />)}
        </div>
      ) : null}
      {models ? (
        <div role="radiogroup" aria-labelledby="model-title" className="mt-4 grid gap-3 sm:grid-cols-2 lg:grid-cols-3">
          {models.map((m) => {
            const selected = m.id === current;
            return (
              <button
                key={m.id}
                type="button"
                role="radio"
                aria-checked={selected}
                disabled={disabled && !selected}
                onClick={() => !selected && onPick(m.id)}
                className={`rounded-xl p-4 text-left ring-1 transition ${
                  selected ? "bg-brand-400/10 ring-2 ring-brand-400" : "bg-ink-950 ring-white/10 hover:ring-white/25"
                } disabled:cursor-not-allowed disabled:opacity-50`}
              >
                <span className="flex items-center justify-between gap-2">
                  <span className="font-semibold text-white">{m.display_name}</span>
                  <span className="text-xs text-zinc-400">{PROVIDER_NAMES[m.provider]}</span>
                </span>
                <span className="mt-1 block text-sm text-zinc-400">{m.description}</span>
              </button>
            );
          })}
        </div>
      ) : null}
    </Card>
  );
}

export default function Page() {
  return (
    <Suspense fallback={null}>
      <AssistantPage />
    </Suspense>
  );
}
