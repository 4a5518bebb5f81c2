"use client";

import { ApiError, OfflineError } from "@/lib/api";
import { Button } from "./index";

/** How a failed request looks: the API's own words, or the offline notice. */
export function ErrorNotice({ error, onRetry }: { error: Error; onRetry?: () => void }) {
  const offline = error instanceof OfflineError;
  return (
    <div
      role="alert"
      className={`flex flex-wrap items-start justify-between gap-3 rounded-xl px-4 py-3 text-sm ring-1 ring-inset ${
        offline ? "bg-amber-400/10 text-amber-100 ring-amber-400/30" : "bg-red-500/10 text-red-100 ring-red-400/30"
      }`}
    >
      <div>
        <p className="font-semibold">{offline ? "Can't reach YourClaw" : "Something went wrong"}</p>
        <p className="mt-0.5 text-current/90" data-testid="error-detail">
          {error.message}
          {error instanceof ApiError && error.code ? <span className="ml-1 opacity-70">({error.code})</span> : null}
        </p>
      </div>
      {onRetry ? (
        <Button variant="secondary" onClick={onRetry} className="shrink-0">
          Try again
        </Button>
      ) : null}
    </div>
  );
}
