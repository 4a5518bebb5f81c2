import Link from "next/link";
import type { ComponentProps } from "react";

type Variant = "primary" | "secondary" | "danger" | "ghost";

const variants: Record<Variant, string> = {
  primary: "bg-brand-400 text-ink-950 hover:bg-brand-300 disabled:bg-brand-600/50",
  secondary: "bg-ink-800 text-zinc-100 ring-1 ring-inset ring-white/10 hover:bg-ink-700",
  danger: "bg-red-500/15 text-red-200 ring-1 ring-inset ring-red-400/30 hover:bg-red-500/25",
  ghost: "text-zinc-300 hover:bg-white/5 hover:text-white",
};

const base =
  "inline-flex items-center justify-center gap-2 rounded-lg px-4 py-2 text-sm font-semibold transition-colors disabled:cursor-not-allowed disabled:opacity-60";

export function Button({ variant = "primary", className = "", ...props }: ComponentProps<"button"> & { variant?: Variant }) {
  return <button className={`${base} ${variants[variant]} ${className}`} {...props} />;
}

export function ButtonLink({ variant = "primary", className = "", ...props }: ComponentProps<typeof Link> & { variant?: Variant }) {
  return <Link className={`${base} ${variants[variant]} ${className}`} {...props} />;
}

export function Card({ className = "", ...props }: ComponentProps<"section">) {
  return <section className={`rounded-2xl bg-ink-900 p-5 ring-1 ring-white/10 sm:p-6 ${className}`} {...props} />;
}

export function Spinner({ className = "size-4" }: { className?: string }) {
  return (
    <svg className={`animate-spin ${className}`} viewBox="0 0 24 24" fill="none" aria-hidden="true">
      <circle cx="12" cy="12" r="10" stroke="currentColor" strokeOpacity="0.25" strokeWidth="4" />
      <path d="M22 12a10 10 0 0 0-10-10" stroke="currentColor" strokeWidth="4" strokeLinecap="round" />
    </svg>
  );
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <div role="status" aria-live="polite" className="flex items-center gap-3 py-8 text-zinc-400">
      <Spinner />
      <span>{label}</span>
    </div>
  );
}

export function Skeleton({ className = "h-4 w-full" }: { className?: string }) {
  return <div aria-hidden="true" className={`animate-pulse rounded bg-white/5 ${className}`} />;
}

export function Empty({ title, children }: { title: string; children?: React.ReactNode }) {
  return (
    <div className="rounded-xl border border-dashed border-white/15 px-6 py-10 text-center">
      <p className="font-medium text-zinc-200">{title}</p>
      {children ? <div className="mt-2 text-sm text-zinc-400">{children}</div> : null}
    </div>
  );
}

export function Badge({ tone, children }: { tone: "green" | "amber" | "red" | "zinc" | "blue"; children: React.ReactNode }) {
  const tones = {
    green: "bg-emerald-400/10 text-emerald-300 ring-emerald-400/30",
    amber: "bg-amber-400/10 text-amber-200 ring-amber-400/30",
    red: "bg-red-400/10 text-red-200 ring-red-400/30",
    zinc: "bg-white/5 text-zinc-300 ring-white/15",
    blue: "bg-sky-400/10 text-sky-200 ring-sky-400/30",
  };
  return (
    <span className={`inline-flex items-center gap-1.5 rounded-full px-2.5 py-0.5 text-xs font-semibold ring-1 ring-inset ${tones[tone]}`}>
      {children}
    </span>
  );
}

export function PageHeader({ title, description, children }: { title: string; description?: string; children?: React.ReactNode }) {
  return (
    <div className="mb-6 flex flex-wrap items-end justify-between gap-4">
      <div>
        <h1 className="text-2xl font-semibold tracking-tight text-white">{title}</h1>
        {description ? <p className="mt-1 text-sm text-zinc-400">{description}</p> : null}
      </div>
      {children}
    </div>
  );
}
