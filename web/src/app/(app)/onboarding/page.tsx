"use client";

import { useRouter } from "next/navigation";
import { useState } from "react";
import { api } from "@/lib/api";
import { useConfig } from "@/lib/config";
import { COUNTRIES, E164, toE164 } from "@/lib/countries";
import { Logo } from "@/components/logo";
import { RequireSession, useSession } from "@/components/app/session";
import { Button, Card, Spinner } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

function PhoneForm() {
  const config = useConfig();
  const router = useRouter();
  const { me } = useSession();
  const [country, setCountry] = useState<string>("US");
  const [number, setNumber] = useState(me.phone ?? "");
  const [touched, setTouched] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const dial = COUNTRIES.find((c) => c.code === country)?.dial ?? "1";
  const phone = toE164(dial, number);
  const valid = E164.test(phone);
  const showInvalid = touched && number.trim() !== "" && !valid;

  async function submit(event: React.FormEvent) {
    event.preventDefault();
    setTouched(true);
    if (!valid) return;
    setBusy(true);
    setError(null);
    try {
      await api(config, "/users/me/phone", { method: "POST", body: { phone } });
      router.replace("/dashboard");
    } catch (e) {
      setError(e instanceof Error ? e : new Error(String(e)));
      setBusy(false);
    }
  }

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
              onChange={(e) => setNumber(e.target.value)}
              onBlur={() => setTouched(true)}
              placeholder="555 123 4567"
              aria-invalid={showInvalid}
              aria-describedby="phone-help"
              className="w-full rounded-r-lg bg-transparent px-3 py-2 text-zinc-100 placeholder:text-zinc-500 focus:outline-none"
            />
          </div>
          <p id="phone-help" className={`mt-1 text-xs ${showInvalid ? "text-red-300" : "text-zinc-400"}`}>
            {showInvalid
              ? `“${phone}” isn't a valid international number. Check the country and the digits.`
              : number.trim()
                ? `We'll save ${phone}.`
                : "Type your number without the country code, or a full number starting with +."}
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
