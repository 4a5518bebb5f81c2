import Link from "next/link";

export function Logo({ href = "/" }: { href?: string }) {
  return (
    <Link href={href} className="flex items-center gap-2 font-semibold tracking-tight text-white">
      <span aria-hidden="true" className="grid size-8 place-items-center rounded-lg bg-brand-400 text-sm font-bold text-ink-950">
        Y
      </span>
      <span>YourClaw</span>
    </Link>
  );
}
