import { Logo } from "@/components/logo";
import { ButtonLink } from "@/components/ui";

export default function NotFound() {
  return (
    <div className="mx-auto flex min-h-dvh max-w-md flex-col justify-center gap-6 px-4">
      <Logo />
      <main>
        <h1 className="text-3xl font-semibold text-white">Page not found</h1>
        <p className="mt-2 text-zinc-400">That page doesn&apos;t exist. It may have moved.</p>
        <ButtonLink href="/" className="mt-6">Back home</ButtonLink>
      </main>
    </div>
  );
}
