/** Countries for the phone picker: dial code and the usual national-number length. */
export const COUNTRIES = [
  { code: "US", name: "United States", dial: "1" },
  { code: "CA", name: "Canada", dial: "1" },
  { code: "GB", name: "United Kingdom", dial: "44" },
  { code: "IE", name: "Ireland", dial: "353" },
  { code: "DE", name: "Germany", dial: "49" },
  { code: "FR", name: "France", dial: "33" },
  { code: "ES", name: "Spain", dial: "34" },
  { code: "PT", name: "Portugal", dial: "351" },
  { code: "IT", name: "Italy", dial: "39" },
  { code: "NL", name: "Netherlands", dial: "31" },
  { code: "BE", name: "Belgium", dial: "32" },
  { code: "CH", name: "Switzerland", dial: "41" },
  { code: "AT", name: "Austria", dial: "43" },
  { code: "SE", name: "Sweden", dial: "46" },
  { code: "PL", name: "Poland", dial: "48" },
  { code: "BR", name: "Brazil", dial: "55" },
  { code: "MX", name: "Mexico", dial: "52" },
  { code: "AR", name: "Argentina", dial: "54" },
  { code: "IN", name: "India", dial: "91" },
  { code: "ID", name: "Indonesia", dial: "62" },
  { code: "NG", name: "Nigeria", dial: "234" },
  { code: "ZA", name: "South Africa", dial: "27" },
  { code: "AE", name: "United Arab Emirates", dial: "971" },
  { code: "IL", name: "Israel", dial: "972" },
  { code: "SG", name: "Singapore", dial: "65" },
  { code: "AU", name: "Australia", dial: "61" },
  { code: "NZ", name: "New Zealand", dial: "64" },
  { code: "JP", name: "Japan", dial: "81" },
] as const;

export const E164 = /^\+[1-9][0-9]{6,14}$/;

/** The E.164 form of what the user typed: a full "+…" number wins over the
 * picked country; a national trunk "0" is dropped. */
export function toE164(dial: string, typed: string): string {
  const trimmed = typed.trim();
  const digits = trimmed.replace(/[^0-9]/g, "");
  if (trimmed.startsWith("+")) return `+${digits}`;
  if (trimmed.startsWith("00")) return `+${digits.slice(2)}`;
  return `+${dial}${digits.replace(/^0+/, "")}`;
}
