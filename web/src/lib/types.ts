// SUSPENDED: asleep after an idle while (healthy); the next message wakes it.
export type AssistantStatus = "NONE" | "PROVISIONING" | "READY" | "SUSPENDED" | "ERROR";
export type SubscriptionStatus = "NONE" | "ACTIVE" | "PAST_DUE" | "CANCELED";
export type Provider = "ANTHROPIC" | "OPENAI" | "GOOGLE";

export type Me = {
  id: string;
  email: string | null;
  /** The number last entered; it reaches the assistant once `phone_verified`. */
  phone: string | null;
  phone_verified: boolean;
  subscription_status: SubscriptionStatus;
  assistant_status: AssistantStatus;
  created_at: string;
};

export type Assistant = {
  status: AssistantStatus;
  model: string;
  created_at: string | null;
  updated_at: string | null;
  last_message_at: string | null;
  last_error: string | null;
};

export type Model = { id: string; display_name: string; description: string; provider: Provider; default: boolean };

export type Subscription = { status: SubscriptionStatus; current_period_end: string | null };

export type ApiKey = { provider: Provider; key_last4: string; created_at: string };

export type UsageTotals = { inbound: number; outbound: number; tokens_in: number; tokens_out: number };
export type UsageDay = UsageTotals & { date: string };
export type LlmSpendDay = {
  date: string;
  calls: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  cost_usd: number;
};
/** This UTC month's model spend: `spent_usd` (platform keys) against `allowance_usd`;
 * `total_cost_usd` includes the user's own keys, which only `cap_usd` caps. */
export type LlmSpend = {
  month: string;
  resets_at: string;
  allowance_usd: number;
  spent_usd: number;
  remaining_usd: number;
  cap_usd: number | null;
  total_cost_usd: number;
  calls: number;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  days: LlmSpendDay[];
};
export type Usage = { today: UsageDay; last_30_days: UsageTotals; days: UsageDay[]; llm: LlmSpend };

/** An outbound message on its way, from Twilio's status callbacks (only forward). */
export type DeliveryStatus = "pending" | "sent" | "delivered" | "read" | "failed";

export type Message = {
  id: string;
  direction: "INBOUND" | "OUTBOUND";
  body: string;
  status: string;
  delivery_status: DeliveryStatus | null;
  num_media: number;
  created_at: string;
};
export type MessagePage = { messages: Message[]; next_before: string | null };

export const PROVIDER_NAMES: Record<Provider, string> = {
  ANTHROPIC: "Anthropic",
  OPENAI: "OpenAI",
  GOOGLE: "Google",
};

/** `POST /users/me/phone`: the claim and the code that proves it. `link` opens
 * WhatsApp with the code, or (where WhatsApp is not available to the number)
 * an SMS with it: `sms:<our number>?body=<code>`. */
export type PhoneClaim = {
  phone: string;
  verified: boolean;
  code: string | null;
  link: string | null;
  whatsapp_available: boolean;
};

export type ChannelName = "whatsapp" | "telegram" | "sms";

export type WhatsAppChannel = { name: "whatsapp"; available: boolean; linked: boolean; address: string | null; reason: string | null };
export type TelegramChannel = { name: "telegram"; available: boolean; linked: boolean; address: string | null };
export type SmsChannel = {
  name: "sms";
  available: boolean;
  linked: boolean;
  address: string | null;
  /** Our SMS number. */
  number: string | null;
  /** The user's number sent STOP: nothing goes to it by SMS until START. */
  opted_out: boolean;
};

/** `GET /channels`: where the user can be reached, where messages the
 * assistant sends first go (`effective`; `preferred` null: the last channel
 * they wrote on), and whether voice notes are answered aloud too. */
export type Channels = {
  preferred: ChannelName | null;
  effective: ChannelName;
  channels: [WhatsAppChannel, TelegramChannel, SmsChannel];
  voice_replies: boolean;
};

export const CHANNEL_NAMES: Record<ChannelName, string> = {
  whatsapp: "WhatsApp",
  telegram: "Telegram",
  sms: "SMS",
};
