/** Where to go after sign-in: `next` when it is a path on this site, else the
 * dashboard. A `next` that browsers would read as another origin (`//evil`,
 * `/\evil`, `https://evil`, tabs or newlines inside `//`, an encoded `//` once
 * decoded) would make the sign-in page an open redirect. */
export const DEFAULT_NEXT = "/dashboard";

// Resolving against a made-up origin tells, the way a browser would, whether
// `next` leaves the site; the origin itself never shows.
const BASE = "http://same-origin.invalid";

export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) {
    return DEFAULT_NEXT;
  }
  let url: URL;
  try {
    url = new URL(next, BASE);
  } catch {
    return DEFAULT_NEXT;
  }
  if (url.origin !== BASE) return DEFAULT_NEXT;
  const target = url.pathname + url.search + url.hash;
  // "/.//evil" resolves to the path "//evil", which a router reads as a host.
  return target.startsWith("//") ? DEFAULT_NEXT : target;
}
