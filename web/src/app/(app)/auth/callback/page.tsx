"use client";

import { useRouter } from "next/navigation";
import { useEffect, useState } from "react";
import { useConfig } from "@/lib/config";
import { safeNext } from "@/lib/safe-next";
import { supabase } from "@/lib/supabase";
import { Logo } from "@/components/logo";
import { ButtonLink, Loading } from "@/components/ui";
import { ErrorNotice } from "@/components/ui/states";

/** Where Google (through Supabase, PKCE) sends the user back: trade the code for
 * a session, then go on. */
export default function AuthCallback() {
  const config = useConfig();
  const router = useRouter();
  const [error, setError] = useState<Error | null>(null);

  useEffect(() => {
    const params = new URLSearchParams(window.location.search);
    const target = safeNext(params.get("next"));
    const client = supabase(config);
    if (!client) {
      setError(new Error("Google sign-in isn't configured on this server."));
      return;
    }
    const reason = params.get("error_description");
    if (reason) {
      setError(new Error(reason));
      return;
    }
    // detectSessionInUrl exchanges ?code= when the client starts; wait for it.
    void client.auth.getSession().then(({ data, error: sessionError }) => {
      if (data.session) router.replace(target);
      else setError(new Error(sessionError?.message ?? "Sign-in did not complete. Please try again."));
    });
  }, [config, router]);

  return (
    <div className="mx-auto flex min-h-dvh max-w-md flex-col justify-center gap-8 px-4">
      <Logo />
      <main className="space-y-4">
        <h1 className="text-xl font-semibold text-white">Signing you in</h1>
        {error ? (
          <>
            <ErrorNotice error={error} />
            <ButtonLink href="/login" variant="secondary">Back to sign-in</ButtonLink>
          </>
        ) : (
          <Loading label="Finishing sign-in…" />
        )}
      </main>
    </div>
  );
}
