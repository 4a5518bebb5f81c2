"use client";

import { useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { api, ApiError } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { COUNTRIES, E164, toE164 } from "@/lib/countries";
import { Logo } from "@/components/logo";
import { RequireSession, useSession } from "@/components/app/session";
import { Button, ButtonLink, Card, Spinner } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";
import type { Me, PhoneClaim } from "@/lib/types";

/** What to send: a number typed with + or 00 as typed (gateway-api reads the
 * usual spellings), otherwise the picked country's code before it, without a
 * national trunk "0". */
function toSend(dial: string, typed: string): string {
  const trimmed = typed.trim();
  if (trimmed.startsWith("+") || trimmed.startsWith("00")) return trimmed;
  return `+${dial} ${trimmed.replace(/^0+/, "")}`;
}

/** The code to send from the claimed number; leaves for the dashboard once
 * gateway-api has seen it arrive (it checks every 2 s). */
function ProveStep({ claim, onBack }: { claim: PhoneClaim; onBack: () => void }) {
  const config = useConfig();
  const router = useRouter();
  useEffect(() => {
    const timer = setInterval(() => {
      void api<Me>(config, "/users/me")
        .then((me) => {
          if (me.phone_verified && me.phone === claim.phone) router.replace("/dashboard");
        })
        .catch(() => undefined); // the next tick tries again
    }, 2000);
    return () => clearInterval(timer);
  }, [claim.phone, config, router]);
  // Where WhatsApp may not carry the assistant, the code goes by SMS.
  const bySms = claim.link?.startsWith("sms:") ?? false;
  return (
    <Card>
      <h1 className="text-2xl font-semibold tracking-tight text-white">Prove it's your number</h1>
      <p className="mt-1 text-sm text-zinc-400">
        Send this code to us {bySms ? "by SMS" : "on WhatsApp"} from {claim.phone}, within 15 minutes. Messages from the
        number reach your assistant once it arrives.
      </p>
      {!claim.whatsapp_available ? (
        <p data-testid="whatsapp-unavailable" className="mt-3 text-sm text-amber-200">
          WhatsApp is not available in your country — use Telegram or SMS with your assistant.
        </p>
      ) : null}
      <p data-testid="phone-code" className="mt-6 text-center font-mono text-4xl tracking-[0.3em] text-white">
        {claim.code}
      </p>
      <ButtonLink href={claim.link ?? "#"} target="_blank" rel="noreferrer" className="mt-6 w-full">
        {bySms ? "Send the code by SMS" : "Open WhatsApp with the code"}
      </ButtonLink>
      <p className="mt-4 flex items-center gap-2 text-sm text-zinc-400" role="status">
        <Spinner /> Waiting for your message…
      </p>
      <button type="button" onClick={onBack} className="mt-4 text-sm text-zinc-400 underline">
        Use another number or get a new code
      </button>
    </Card>
  );
}

function PhoneForm() {
  const config = useConfig();
  const router = useRouter();
  const { me } = useSession();
  const [claim, setClaim] = useState<PhoneClaim | null>(null);
  const [country, setCountry] = useState<string>("US");
  const [number, setNumber] = useState(me.phone ?? "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  // gateway-api's sentence for a number it cannot read (INVALID_PHONE).
  const [invalid, setInvalid] = useState<string | null>(null);
  const dial = COUNTRIES.find((c) => c.code === country)?.dial ?? "1";
  const phone = toE164(dial, number);
  const preview = E164.test(phone) && /^[\s0-9+().-]*$/.test(number);

  async function submit(event: React.FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setInvalid(null);
    try {
      const made = await api<PhoneClaim>(config, "/users/me/phone", {
        method: "POST",
        body: { phone: toSend(dial, number) },
      });
      if (made.verified) router.replace("/dashboard");
      else {
        setClaim(made);
        setBusy(false);
      }
    } catch (e) {
      if (e instanceof ApiError && e.code === "INVALID_PHONE") setInvalid(e.detail);
      else setError(e instanceof Error ? e : new Error(String(e)));
      setBusy(false);
    }
  }

  if (claim) return <ProveStep claim={claim} onBack={() => setClaim(null)} />;
  return (
    <Card>
      <h1 className="text-2xl font-semibold tracking-tight text-white">Your WhatsApp number</h1>
      <p className="mt-1 text-sm text-zinc-400">
        Your assistant answers messages from this number only. Signed in as {me.email ?? "you"}.
      </p>
      <form onSubmit={(e) => void submit(e)} className="mt-6 space-y-4" noValidate>
        <div>
          <label htmlFor="country" className="block text-sm text-zinc-300">Country</label>
          <select
            id="country"
            value={country}
            onChange={(e) => setCountry(e.target.value)}
            className="mt-1 w-full rounded-lg bg-ink-950 px-3 py-2 text-zinc-100 ring-1 ring-white/15"
          >
            {COUNTRIES.map((c) => (
              <option key={c.code} value={c.code}>
                {c.name} (+{c.dial})
              </option>
            ))}
          </select>
        </div>
        <div>
          <label htmlFor="phone" className="block text-sm text-zinc-300">WhatsApp number</label>
          <div className="mt-1 flex rounded-lg bg-ink-950 ring-1 ring-white/15 focus-within:ring-brand-400">
            <span className="select-none border-r border-white/10 px-3 py-2 text-zinc-400" aria-hidden="true">+{dial}</span>
            <input
              id="phone"
              type="tel"
              inputMode="tel"
              autoComplete="tel-national"
              required
              value={number}
              onChange={(e) => {
                setNumber(e.target.value);
                setInvalid(null);
              }}
              placeholder="555 123 4567"
              aria-invalid={invalid !== null}
              aria-describedby="phone-help"
              className="w-full rounded-r-lg bg-transparent px-3 py-2 text-zinc-100 placeholder:text-zinc-500 focus:outline-none"
            />
          </div>
          <p
            id="phone-help"
            data-testid="phone-help"
            role={invalid ? "alert" : undefined}
            className={`mt-1 text-xs ${invalid ? "text-red-300" : "text-zinc-400"}`}
          >
            {invalid ??
              (number.trim() && preview
                ? `We'll save ${phone}.`
                : "Type your number without the country code, or a full number starting with +.")}
          </p>
        </div>
        {error ? <ErrorNotice error={error} /> : null}
        <Button type="submit" disabled={busy} className="w-full">
          {busy ? <Spinner /> : null}
          Continue
        </Button>
      </form>
    </Card>
  );
}

export default function Onboarding() {
  return (
    <RequireSession allowNoPhone>
      <div className="mx-auto flex min-h-dvh max-w-md flex-col justify-center gap-8 px-4 py-12">
        <Logo />
        <main>
          <PhoneForm />
        </main>
      </div>
    </RequireSession>
  );
}
