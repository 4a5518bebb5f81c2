import { Badge, Spinner } from "@/components/ui";
import type { AssistantStatus } from "@/lib/types";

export function AssistantBadge({ status }: { status: AssistantStatus | "DELETING" }) {
  switch (status) {
    case "DELETING":
      return <Badge tone="amber"><Spinner className="size-3" />Deleting</Badge>;
    case "READY":
      return <Badge tone="green"><span aria-hidden="true" className="size-1.5 rounded-full bg-emerald-400" />Ready</Badge>;
    case "SUSPENDED":
      return <Badge tone="zinc"><span aria-hidden="true" className="size-1.5 rounded-full bg-zinc-400" />Asleep, wakes when you write</Badge>;
    case "PROVISIONING":
      return <Badge tone="blue"><Spinner className="size-3" />Setting up</Badge>;
    case "ERROR":
      return <Badge tone="red">Error</Badge>;
    default:
      return <Badge tone="zinc">No assistant</Badge>;
  }
}
