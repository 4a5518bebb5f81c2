"use client";

import { usePathname, useRouter } from "next/navigation";
import { createContext, useCallback, useContext, useEffect, useState } from "react";
import { api, OfflineError, SignedOutError } from "@/lib/api";
import { signOut } from "@/lib/auth";
import { useConfig } from "@/lib/config";
import type { Me } from "@/lib/types";
import { Logo } from "@/components/logo";
import { Loading } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

type Session = { me: Me; reload: () => Promise<void>; signOut: () => Promise<void> };

const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside RequireSession");
  return session;
}

/** Loads the signed-in user; sends signed-out users to /login and users without a
 * proven WhatsApp number to /onboarding (unless `allowNoPhone`). */
export function RequireSession({ children, allowNoPhone = false }: { children: React.ReactNode; allowNoPhone?: boolean }) {
  const config = useConfig();
  const router = useRouter();
  const pathname = usePathname();
  const [me, setMe] = useState<Me | null>(null);
  const [error, setError] = useState<Error | null>(null);

  const load = useCallback(async () => {
    try {
      const value = await api<Me>(config, "/users/me");
      setError(null);
      if (!value.phone_verified && !allowNoPhone) {
        router.replace("/onboarding");
        return;
      }
      setMe(value);
    } catch (e) {
      if (e instanceof SignedOutError) {
        await signOut(config);
        router.replace(`/login?next=${encodeURIComponent(pathname)}`);
        return;
      }
      setError(e instanceof Error ? e : new Error(String(e)));
    }
  }, [allowNoPhone, config, pathname, router]);

  useEffect(() => {
    void load();
  }, [load]);

  // Offline: try again by itself, so the page recovers when the API is back.
  useEffect(() => {
    if (!(error instanceof OfflineError)) return;
    const id = window.setInterval(() => void load(), 4000);
    return () => window.clearInterval(id);
  }, [error, load]);

  const doSignOut = useCallback(async () => {
    await signOut(config);
    router.replace("/login");
  }, [config, router]);

  if (me) {
    return <SessionContext.Provider value={{ me, reload: load, signOut: doSignOut }}>{children}</SessionContext.Provider>;
  }
  return (
    <div className="mx-auto flex min-h-dvh max-w-lg flex-col justify-center gap-6 px-4">
      <Logo />
      <main>
        <h1 className="sr-only">YourClaw</h1>
        {error ? <ErrorNotice error={error} onRetry={() => void load()} /> : <Loading label="Loading your account…" />}
      </main>
    </div>
  );
}
