"use client";

import { RequireSession } from "@/components/app/session";
import { DashboardShell } from "@/components/app/shell";

export default function DashboardLayout({ children }: { children: React.ReactNode }) {
  return (
    <RequireSession>
      <DashboardShell>{children}</DashboardShell>
    </RequireSession>
  );
}
