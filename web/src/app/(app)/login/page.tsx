"use client";

import { useRouter, useSearchParams } from "next/navigation";
import { Suspense, useEffect, useState } from "react";
import { devLogin } from "@/lib/api";
import { clearDevToken, getAccessToken, storeDevToken } from "@/lib/auth";
import { useConfig } from "@/lib/config";
import { safeNext } from "@/lib/safe-next";
import { supabase } from "@/lib/supabase";
import { Logo } from "@/components/logo";
import { Button, Card, Spinner } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

function LoginForm() {
  const config = useConfig();
  const router = useRouter();
  const next = safeNext(useSearchParams().get("next"));
  const [email, setEmail] = useState("");
  const [busy, setBusy] = useState<"google" | "dev" | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const googleReady = Boolean(config.supabaseUrl && config.supabaseAnonKey);

  useEffect(() => {
    void getAccessToken(config).then((token) => {
      if (token) router.replace(next);
    });
  }, [config, next, router]);

  async function google() {
    const client = supabase(config);
    if (!client) return;
    setBusy("google");
    setError(null);
    clearDevToken();
    const { error: oauthError } = await client.auth.signInWithOAuth({
      provider: "google",
      options: { redirectTo: `${window.location.origin}/auth/callback?next=${encodeURIComponent(next)}` },
    });
    if (oauthError) {
      setError(new Error(oauthError.message));
      setBusy(null);
    }
  }

  async function dev(event: React.FormEvent) {
    event.preventDefault();
    setBusy("dev");
    setError(null);
    try {
      const { access_token, expires_in } = await devLogin(config, email.trim());
      storeDevToken(access_token, expires_in);
      router.replace(next);
    } catch (e) {
      setError(e instanceof Error ? e : new Error(String(e)));
      setBusy(null);
    }
  }

  return (
    <Card className="w-full">
      <h1 className="text-2xl font-semibold tracking-tight text-white">Sign in</h1>
      <p className="mt-1 text-sm text-zinc-400">New here? Signing in creates your account.</p>
      <div className="mt-6 space-y-4">
        <Button onClick={() => void google()} disabled={!googleReady || busy !== null} variant="secondary" className="w-full py-3">
          {busy === "google" ? <Spinner /> : <GoogleIcon />}
          Continue with Google
        </Button>
        {!googleReady ? (
          <p className="text-xs text-zinc-400">Google sign-in isn&apos;t configured on this server (SUPABASE_URL, SUPABASE_ANON_KEY).</p>
        ) : null}
        {config.devLogin ? (
          <form onSubmit={(e) => void dev(e)} className="space-y-3 border-t border-white/10 pt-4" aria-labelledby="dev-title">
            <h2 id="dev-title" className="text-sm font-semibold text-zinc-200">Dev sign-in</h2>
            <p className="text-xs text-zinc-400">Local runs only: sign in with any email, no password.</p>
            <label htmlFor="dev-email" className="block text-sm text-zinc-300">Email</label>
            <input
              id="dev-email"
              type="email"
              required
              autoComplete="email"
              value={email}
              onChange={(e) => setEmail(e.target.value)}
              placeholder="you@example.com"
              className="w-full rounded-lg bg-ink-950 px-3 py-2 text-zinc-100 ring-1 ring-white/15 placeholder:text-zinc-500 focus:ring-brand-400"
            />
            <Button type="submit" disabled={busy !== null} className="w-full">
              {busy === "dev" ? <Spinner /> : null}
              Sign in with email
            </Button>
          </form>
        ) : null}
        {error ? <ErrorNotice error={error} /> : null}
      </div>
    </Card>
  );
}

function GoogleIcon() {
  return (
    <svg viewBox="0 0 24 24" className="size-4" aria-hidden="true">
      <path fill="#EA4335" d="M12 10.2v3.9h5.5c-.2 1.3-1.6 3.8-5.5 3.8-3.3 0-6-2.7-6-6.1s2.7-6.1 6-6.1c1.9 0 3.1.8 3.8 1.5l2.6-2.5C16.8 3.2 14.6 2.2 12 2.2 6.6 2.2 2.3 6.6 2.3 12s4.3 9.8 9.7 9.8c5.6 0 9.3-3.9 9.3-9.5 0-.6-.1-1.1-.2-1.6H12z" />
    </svg>
  );
}

export default function LoginPage() {
  return (
    <div className="mx-auto flex min-h-dvh max-w-md flex-col justify-center gap-8 px-4 py-12">
      <Logo />
      <main>
        <Suspense fallback={null}>
          <LoginForm />
        </Suspense>
      </main>
    </div>
  );
}
