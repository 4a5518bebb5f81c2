"use client";

import { useState } from "react";
import { api } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { formatDate } from "@/lib/format";
import type { DeliveryStatus, Message, MessagePage } from "@/lib/types";
import { useResource } from "@/lib/use-resource";
import { Button, Card, Empty, PageHeader, Skeleton, Spinner } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

const TICKS: Record<DeliveryStatus, { label: string; mark: string; className: string }> = {
  pending: { label: "Sending", mark: "", className: "text-zinc-400" },
  sent: { label: "Sent", mark: "✓", className: "text-zinc-300" },
  delivered: { label: "Delivered", mark: "✓✓", className: "text-zinc-300" },
  read: { label: "Read", mark: "✓✓", className: "text-sky-400" },
  failed: { label: "Not delivered", mark: "!", className: "font-bold text-red-300" },
};

/** WhatsApp's ticks for one of the assistant's messages. */
function Ticks({ status }: { status: DeliveryStatus }) {
  const tick = TICKS[status];
  return (
    <span
      role="img"
      aria-label={tick.label}
      title={tick.label}
      data-testid="delivery"
      data-status={status}
      className={`ml-1 inline-block tracking-[-0.25em] ${tick.className}`}
    >
      {status === "pending" ? (
        // A clock, drawn: emoji fonts are not everywhere.
        <svg viewBox="0 0 12 12" className="inline h-[1em] w-[1em] align-[-0.15em]" aria-hidden="true">
          <circle cx="6" cy="6" r="4.75" fill="none" stroke="currentColor" strokeWidth="1.2" />
          <path d="M6 3.5V6l1.75 1.25" fill="none" stroke="currentColor" strokeWidth="1.2" strokeLinecap="round" />
        </svg>
      ) : (
        tick.mark
      )}
    </span>
  );
}

function Bubble({ message }: { message: Message }) {
  const mine = message.direction === "INBOUND";
  return (
    <li className={`flex ${mine ? "justify-end" : "justify-start"}`}>
      <div className={`max-w-[85%] rounded-2xl px-4 py-2.5 text-sm sm:max-w-[70%] ${mine ? "rounded-br-md bg-[#005c4b] text-white" : "rounded-bl-md bg-ink-800 text-zinc-100"}`}>
        <p className="sr-only">{mine ? "You:" : "Assistant:"}</p>
        <p className="whitespace-pre-wrap break-words">{message.body || (message.num_media ? "📎 Attachment" : "")}</p>
        <p className="mt-1 text-right text-[11px] text-zinc-300">
          {formatDate(message.created_at, true)}
          {message.delivery_status ? <Ticks status={message.delivery_status} /> : null}
          {message.delivery_status === "failed" ? <span className="ml-1.5 text-red-300">not delivered</span> : null}
        </p>
      </div>
    </li>
  );
}

export default function ConversationPage() {
  const config = useConfig();
  const latest = useResource<MessagePage>("/messages?limit=50", 4000);
  const [older, setOlder] = useState<Message[]>([]);
  const [cursor, setCursor] = useState<string | null | undefined>(undefined);
  const [loadingOlder, setLoadingOlder] = useState(false);
  const [olderError, setOlderError] = useState<Error | null>(null);

  const next = cursor === undefined ? latest.data?.next_before ?? null : cursor;
  const seen = new Set(latest.data?.messages.map((m) => m.id));
  const all = [...(latest.data?.messages ?? []), ...older.filter((m) => !seen.has(m.id))]
    // Never sent (an empty part, a limit notice already given): nothing to show.
    .filter((m) => m.status !== "SKIPPED")
    .reverse();

  async function loadOlder() {
    if (!next) return;
    setLoadingOlder(true);
    setOlderError(null);
    try {
      const page = await api<MessagePage>(config, `/messages?limit=50&before=${next}`);
      setOlder((prev) => [...prev, ...page.messages]);
      setCursor(page.next_before);
    } catch (e) {
      setOlderError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      setLoadingOlder(false);
    }
  }

  return (
    <>
      <PageHeader title="Conversation" description="Your WhatsApp chat with your assistant. Updates by itself." />
      <div className="space-y-4">
        {latest.error ? <ErrorNotice error={latest.error} onRetry={() => void latest.reload()} /> : null}
        <Card>
          {!latest.data && !latest.error ? (
            <div aria-busy="true" aria-label="Loading messages" className="space-y-3">
              <Skeleton className="ml-auto h-10 w-1/2" />
              <Skeleton className="h-14 w-2/3" />
              <Skeleton className="ml-auto h-10 w-1/3" />
            </div>
          ) : null}
          {latest.data && all.length === 0 ? (
            <Empty title="No messages yet">Message your assistant on WhatsApp; the conversation shows up here.</Empty>
          ) : null}
          {all.length > 0 ? (
            <>
              {next ? (
                <div className="mb-4 flex justify-center">
                  <Button variant="secondary" onClick={() => void loadOlder()} disabled={loadingOlder}>
                    {loadingOlder ? <Spinner /> : null}Load older messages
                  </Button>
                </div>
              ) : null}
              {olderError ? <div className="mb-4"><ErrorNotice error={olderError} /></div> : null}
              <ol aria-label="Messages" className="space-y-3" data-testid="messages">
                {all.map((m) => <Bubble key={m.id} message={m} />)}
              </ol>
            </>
          ) : null}
        </Card>
      </div>
    </>
  );
}
