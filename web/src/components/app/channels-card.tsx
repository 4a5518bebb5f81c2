"use client";

import Link from "next/link";
import { useEffect, useState } from "react";
import { api, ApiError } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { CHANNEL_NAMES, type ChannelName, type Channels } from "@/lib/types";
import type { Resource } from "@/lib/use-resource";
import { Badge, Button, ButtonLink, Card, Skeleton, Spinner } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

type TelegramLink = { url: string; expires_at?: string };

/** What the Telegram link button says when the server cannot link a chat. */
const TELEGRAM_UNAVAILABLE = "Telegram isn't set up on this server yet.";

/** Where the user can reach their assistant (WhatsApp, Telegram, SMS), where
 * messages it sends first (reminders, notices) go, and whether it answers voice
 * notes aloud. */
export function ChannelsCard({
  channels,
  onWaitingForTelegram,
}: {
  /** `GET /channels`, polled while `onWaitingForTelegram(true)` holds. */
  channels: Resource<Channels>;
  onWaitingForTelegram: (waiting: boolean) => void;
}) {
  const config = useConfig();
  // After "Link Telegram", poll until the chat's /start arrives.
  const [waitingForTelegram, setWaitingForTelegram] = useState(false);
  useEffect(() => onWaitingForTelegram(waitingForTelegram), [waitingForTelegram, onWaitingForTelegram]);
  const [shown, setShown] = useState<Channels | undefined>(undefined);
  const [saving, setSaving] = useState(false);
  const [saveError, setSaveError] = useState<Error | null>(null);
  const [linking, setLinking] = useState(false);
  const [telegramUrl, setTelegramUrl] = useState<string | null>(null);
  const [telegramError, setTelegramError] = useState<string | null>(null);

  useEffect(() => {
    if (channels.data) setShown(channels.data);
  }, [channels.data]);

  const telegramLinked = shown?.channels[1].linked ?? false;
  useEffect(() => {
    if (telegramLinked) {
      setWaitingForTelegram(false);
      setTelegramUrl(null);
    }
  }, [telegramLinked]);
  // A link code lives 15 minutes; stop polling after that.
  useEffect(() => {
    if (!waitingForTelegram) return;
    const id = window.setTimeout(() => setWaitingForTelegram(false), 15 * 60 * 1000);
    return () => window.clearTimeout(id);
  }, [waitingForTelegram]);

  /** A setting saved; the card shows the server's answer. */
  async function save(path: string, body: unknown) {
    setSaving(true);
    setSaveError(null);
    try {
      setShown(await api<Channels>(config, path, { method: "PUT", body }));
    } catch (e) {
      setSaveError(e instanceof Error ? e : new Error(String(e)));
    } finally {
      setSaving(false);
    }
  }

  async function linkTelegram() {
    setLinking(true);
    setTelegramError(null);
    try {
      const { url } = await api<TelegramLink>(config, "/channels/telegram/link", { method: "POST" });
      setTelegramUrl(url);
      setWaitingForTelegram(true);
      window.open(url, "_blank", "noopener,noreferrer");
    } catch (e) {
      // 503 TELEGRAM_NOT_CONFIGURED, or a server without Telegram linking at all.
      if (e instanceof ApiError && (e.status === 503 || e.status === 404)) setTelegramError(TELEGRAM_UNAVAILABLE);
      else setTelegramError(e instanceof Error ? e.message : String(e));
    } finally {
      setLinking(false);
    }
  }

  return (
    <Card aria-labelledby="channels-title" data-testid="channels-card">
      <h2 id="channels-title" className="text-lg font-semibold text-white">Channels</h2>
      <p className="mt-1 max-w-prose text-sm text-zinc-400">
        Reach your assistant on any of these; it answers on the channel you wrote on.
      </p>
      {channels.error && !shown ? (
        <div className="mt-4"><ErrorNotice error={channels.error} onRetry={() => void channels.reload()} /></div>
      ) : null}
      {!shown && !channels.error ? (
        <div className="mt-4 space-y-3" aria-busy="true" aria-label="Loading your channels">
          {[0, 1, 2].map((i) => <Skeleton key={i} className="h-14 w-full" />)}
        </div>
      ) : null}
      {shown ? (
        <>
          <ul className="mt-4 divide-y divide-white/10 rounded-xl ring-1 ring-white/10">
            <WhatsAppRow channels={shown} />
            <ChannelRow name="Telegram" testId="channel-telegram" badge={telegramBadge(shown)}>
              <TelegramBody
                channels={shown}
                linking={linking}
                url={telegramUrl}
                error={telegramError}
                onLink={() => void linkTelegram()}
              />
            </ChannelRow>
            <SmsRow channels={shown} />
          </ul>
          <PreferredPicker channels={shown} saving={saving} onPick={(channel) => void save("/channels/preferred", { channel })} />
          <VoiceRepliesSwitch
            on={shown.voice_replies}
            saving={saving}
            onChange={(enabled) => void save("/channels/voice", { enabled })}
          />
          {saveError ? <div className="mt-3"><ErrorNotice error={saveError} /></div> : null}
        </>
      ) : null}
    </Card>
  );
}

function ChannelRow({ name, testId, badge, children }: { name: string; testId: string; badge: React.ReactNode; children: React.ReactNode }) {
  return (
    <li className="px-4 py-3" data-testid={testId} aria-label={name}>
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h3 className="font-semibold text-white">{name}</h3>
        {badge}
      </div>
      <div className="mt-1 text-sm text-zinc-300">{children}</div>
    </li>
  );
}

function WhatsAppRow({ channels }: { channels: Channels }) {
  const whatsapp = channels.channels[0];
  if (!whatsapp.available) {
    return (
      <ChannelRow name="WhatsApp" testId="channel-whatsapp" badge={<Badge tone="amber">Not available</Badge>}>
        <p>{whatsapp.reason ?? "WhatsApp is not available in your country — use Telegram or SMS."}</p>
      </ChannelRow>
    );
  }
  if (!whatsapp.linked) {
    return (
      <ChannelRow name="WhatsApp" testId="channel-whatsapp" badge={<Badge tone="zinc">Not linked</Badge>}>
        <p>Prove your number with a code sent from it, then message your assistant on WhatsApp.</p>
        <ButtonLink href="/onboarding" variant="secondary" className="mt-2">Verify my number</ButtonLink>
      </ChannelRow>
    );
  }
  return (
    <ChannelRow name="WhatsApp" testId="channel-whatsapp" badge={<Badge tone="green">Linked</Badge>}>
      <p>
        Your number <strong className="whitespace-nowrap text-white">{whatsapp.address}</strong> is verified.{" "}
        <Link href="/onboarding" className="text-zinc-400 underline hover:text-white">Change number</Link>
      </p>
    </ChannelRow>
  );
}

function telegramBadge(channels: Channels) {
  const telegram = channels.channels[1];
  if (telegram.linked) return <Badge tone="green">Linked</Badge>;
  if (!telegram.available) return <Badge tone="zinc">Not set up</Badge>;
  return <Badge tone="zinc">Not linked</Badge>;
}

function TelegramBody(props: { channels: Channels; linking: boolean; url: string | null; error: string | null; onLink: () => void }) {
  const telegram = props.channels.channels[1];
  if (telegram.linked) {
    return <p>Your Telegram chat{telegram.address ? <> <strong className="text-white">{telegram.address}</strong></> : null} is linked.</p>;
  }
  if (!telegram.available) return <p>{TELEGRAM_UNAVAILABLE}</p>;
  return (
    <>
      <p>Link a Telegram chat: we open Telegram, you press Start, and the chat is yours.</p>
      <div className="mt-2 flex flex-wrap items-center gap-3">
        <Button variant="secondary" onClick={props.onLink} disabled={props.linking}>
          {props.linking ? <Spinner /> : null}Link Telegram
        </Button>
        {props.url ? (
          <a href={props.url} target="_blank" rel="noreferrer" className="text-sm text-zinc-300 underline hover:text-white">
            Open Telegram
          </a>
        ) : null}
      </div>
      {props.url ? (
        <p role="status" className="mt-2 flex items-center gap-2 text-zinc-400">
          <Spinner /> Press Start in Telegram within 15 minutes; this card updates by itself.
        </p>
      ) : null}
      {props.error ? <p role="alert" data-testid="telegram-error" className="mt-2 text-amber-200">{props.error}</p> : null}
    </>
  );
}

function SmsRow({ channels }: { channels: Channels }) {
  const sms = channels.channels[2];
  if (!sms.available) {
    return (
      <ChannelRow name="SMS" testId="channel-sms" badge={<Badge tone="zinc">Not set up</Badge>}>
        <p>SMS isn&apos;t set up on this server yet.</p>
      </ChannelRow>
    );
  }
  const number = <strong className="whitespace-nowrap text-white">{sms.number}</strong>;
  if (sms.opted_out) {
    return (
      <ChannelRow name="SMS" testId="channel-sms" badge={<Badge tone="amber">Opted out</Badge>}>
        <p>You sent STOP, so we send you nothing by SMS. Text START to {number} to turn SMS back on.</p>
      </ChannelRow>
    );
  }
  return (
    <ChannelRow name="SMS" testId="channel-sms" badge={sms.linked ? <Badge tone="green">Linked</Badge> : <Badge tone="zinc">Not linked</Badge>}>
      {sms.linked ? (
        <p>Text {number} from <strong className="whitespace-nowrap text-white">{sms.address}</strong>.</p>
      ) : (
        <p>Verify your phone number to text your assistant at {number}.</p>
      )}
    </ChannelRow>
  );
}

/** The channels a message we send first can go to: linked, offered, and (SMS)
 * not opted out. */
function reachable(channels: Channels): ChannelName[] {
  return channels.channels
    .filter((c) => c.available && c.linked && !(c.name === "sms" && c.opted_out))
    .map((c) => c.name);
}

function PreferredPicker({ channels, saving, onPick }: { channels: Channels; saving: boolean; onPick: (channel: ChannelName | null) => void }) {
  const options = reachable(channels);
  // Keep a stored choice selectable even if it is no longer reachable.
  if (channels.preferred && !options.includes(channels.preferred)) options.push(channels.preferred);
  return (
    <div className="mt-5">
      <label htmlFor="preferred-channel" className="block text-sm font-medium text-zinc-200">
        Reminders and notices go to
      </label>
      <div className="mt-1 flex flex-wrap items-center gap-3">
        <select
          id="preferred-channel"
          value={channels.preferred ?? ""}
          disabled={saving}
          onChange={(e) => onPick(e.target.value === "" ? null : (e.target.value as ChannelName))}
          className="rounded-lg bg-ink-950 px-3 py-2 text-zinc-100 ring-1 ring-white/15 disabled:opacity-60"
        >
          <option value="">The channel I last wrote on</option>
          {options.map((name) => (
            <option key={name} value={name}>{CHANNEL_NAMES[name]}</option>
          ))}
        </select>
        {saving ? <Spinner /> : null}
      </div>
      <p className="mt-1 text-xs text-zinc-400" data-testid="effective-channel" aria-live="polite">
        Right now they go to {CHANNEL_NAMES[channels.effective]}.
      </p>
    </div>
  );
}

/** Voice replies: the answer to a voice note comes as a voice message too
 * (WhatsApp and Telegram; SMS stays text). `/voice on|off` in chat does the same. */
function VoiceRepliesSwitch({ on, saving, onChange }: { on: boolean; saving: boolean; onChange: (on: boolean) => void }) {
  return (
    <div className="mt-5">
      <div className="flex flex-wrap items-center gap-3">
        <button
          type="button"
          role="switch"
          id="voice-replies"
          aria-checked={on}
          aria-describedby="voice-replies-help"
          disabled={saving}
          onClick={() => onChange(!on)}
          className={`relative inline-flex h-6 w-11 shrink-0 items-center rounded-full ring-1 ring-white/15 transition-colors disabled:opacity-60 ${
            on ? "bg-brand-400" : "bg-ink-950"
          }`}
        >
          <span
            aria-hidden="true"
            className={`inline-block h-4 w-4 rounded-full bg-white transition-transform ${on ? "translate-x-6" : "translate-x-1"}`}
          />
        </button>
        <label htmlFor="voice-replies" className="text-sm font-medium text-zinc-200">Voice replies</label>
        {saving ? <Spinner /> : null}
      </div>
      <p id="voice-replies-help" className="mt-1 max-w-prose text-xs text-zinc-400" data-testid="voice-replies-help">
        {on
          ? "On: your assistant answers your voice notes with a voice message as well as the text, on WhatsApp and Telegram. SMS stays text."
          : "Off: your assistant answers your voice notes in text. Turn on to hear its answers too (WhatsApp and Telegram)."}
      </p>
    </div>
  );
}
