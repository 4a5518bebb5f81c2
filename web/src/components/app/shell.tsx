"use client";

import Link from "next/link";
import { usePathname } from "next/navigation";
import { useEffect, useRef, useState } from "react";
import { Logo } from "@/components/logo";
import { useSession } from "./session";

const NAV = [
  { href: "/dashboard", label: "Assistant" },
  { href: "/dashboard/conversation", label: "Conversation" },
  { href: "/dashboard/usage", label: "Usage" },
  { href: "/dashboard/api-keys", label: "API keys" },
  { href: "/dashboard/billing", label: "Billing" },
] as const;

function NavLinks({ onNavigate }: { onNavigate?: () => void }) {
  const pathname = usePathname();
  return (
    <ul className="space-y-1">
      {NAV.map((item) => {
        const current = pathname === item.href;
        return (
          <li key={item.href}>
            <Link
              href={item.href}
              onClick={onNavigate}
              aria-current={current ? "page" : undefined}
              className={`block rounded-lg px-3 py-2 text-sm font-medium ${
                current ? "bg-white/10 text-white" : "text-zinc-300 hover:bg-white/5 hover:text-white"
              }`}
            >
              {item.label}
            </Link>
          </li>
        );
      })}
    </ul>
  );
}

function ProfileMenu() {
  const { me, signOut } = useSession();
  const [open, setOpen] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const close = (event: MouseEvent | KeyboardEvent) => {
      if (event instanceof KeyboardEvent ? event.key === "Escape" : !ref.current?.contains(event.target as Node)) setOpen(false);
    };
    document.addEventListener("mousedown", close);
    document.addEventListener("keydown", close);
    return () => {
      document.removeEventListener("mousedown", close);
      document.removeEventListener("keydown", close);
    };
  }, [open]);
  const initial = (me.email ?? "?").slice(0, 1).toUpperCase();
  return (
    <div ref={ref} className="relative">
      <button
        type="button"
        aria-expanded={open}
        aria-controls="profile-menu"
        onClick={() => setOpen(!open)}
        className="flex w-full items-center gap-3 rounded-lg px-2 py-2 text-left hover:bg-white/5"
      >
        <span aria-hidden="true" className="grid size-8 shrink-0 place-items-center rounded-full bg-ink-700 text-sm font-semibold">
          {initial}
        </span>
        <span className="min-w-0">
          <span className="block truncate text-sm font-medium text-white">{me.email ?? "Your account"}</span>
          <span className="block truncate text-xs text-zinc-400">{me.phone}</span>
        </span>
        <span className="sr-only">Account menu</span>
      </button>
      {open ? (
        <div id="profile-menu" className="absolute bottom-full left-0 right-0 mb-2 rounded-xl bg-ink-800 p-1 shadow-xl ring-1 ring-white/10">
          <Link href="/onboarding" className="block rounded-lg px-3 py-2 text-sm text-zinc-200 hover:bg-white/5">
            Change WhatsApp number
          </Link>
          <button
            type="button"
            onClick={() => void signOut()}
            className="block w-full rounded-lg px-3 py-2 text-left text-sm text-zinc-200 hover:bg-white/5"
          >
            Sign out
          </button>
        </div>
      ) : null}
    </div>
  );
}

export function DashboardShell({ children }: { children: React.ReactNode }) {
  const [menuOpen, setMenuOpen] = useState(false);
  const pathname = usePathname();
  useEffect(() => setMenuOpen(false), [pathname]);
  return (
    <div className="min-h-dvh lg:grid lg:grid-cols-[16rem_1fr]">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-4 focus:top-4 focus:z-50 focus:rounded focus:bg-white focus:px-3 focus:py-2 focus:text-black">
        Skip to content
      </a>
      <header className="sticky top-0 z-30 flex items-center justify-between border-b border-white/5 bg-ink-950/90 px-4 py-3 backdrop-blur lg:hidden">
        <Logo href="/dashboard" />
        <button
          type="button"
          aria-expanded={menuOpen}
          aria-controls="mobile-nav"
          onClick={() => setMenuOpen(!menuOpen)}
          className="rounded-lg p-2 text-zinc-200 hover:bg-white/5"
        >
          <span className="sr-only">{menuOpen ? "Close menu" : "Open menu"}</span>
          <svg viewBox="0 0 24 24" className="size-6" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2">
            {menuOpen ? <path d="M6 6l12 12M18 6L6 18" /> : <path d="M4 7h16M4 12h16M4 17h16" />}
          </svg>
        </button>
      </header>
      {menuOpen ? (
        <nav id="mobile-nav" aria-label="Dashboard" className="fixed inset-x-0 top-[57px] z-20 border-b border-white/10 bg-ink-900 p-4 lg:hidden">
          <NavLinks onNavigate={() => setMenuOpen(false)} />
          <div className="mt-4 border-t border-white/10 pt-4">
            <ProfileMenu />
          </div>
        </nav>
      ) : null}
      <aside className="sticky top-0 hidden h-dvh flex-col border-r border-white/5 bg-ink-900/60 p-4 lg:flex">
        <div className="px-2 py-1">
          <Logo href="/dashboard" />
        </div>
        <nav aria-label="Dashboard" className="mt-8 flex-1">
          <NavLinks />
        </nav>
        <ProfileMenu />
      </aside>
      <main id="main" className="mx-auto w-full max-w-5xl px-4 py-8 sm:px-8">
        {children}
      </main>
    </div>
  );
}
