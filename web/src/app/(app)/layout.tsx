import { connection } from "next/server";
import { ConfigProvider } from "@/lib/config";
import { readConfig } from "@/lib/server-config";

// The signed-in part of the site reads its settings per request, so the same
// build runs against any gateway-api (local stack, e2e stack, production).
export default async function AppLayout({ children }: { children: React.ReactNode }) {
  await connection();
  return <ConfigProvider config={readConfig()}>{children}</ConfigProvider>;
}
