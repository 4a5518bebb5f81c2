const conversation = [
  { from: "me", text: "Find me a nonstop to Lisbon on May 12 under $300.", time: "7:02 AM" },
  { from: "bot", text: "Checked four airlines: TAP has one at $284, leaving 7:05 AM and landing 7:20 PM. The others start at $341.", time: "7:03 AM" },
  { from: "me", text: "Perfect. Save it to my trip notes.", time: "7:04 AM" },
  { from: "bot", text: "Done: added to trip-notes.md with the fare, the times and the booking link.", time: "7:04 AM" },
] as const;

function Ticks() {
  return (
    <svg viewBox="0 0 16 11" className="inline size-3.5 text-sky-300" aria-label="Read">
      <path fill="currentColor" d="M11.07.65 4.9 6.8 2.2 4.1.9 5.4l4 4 7.5-7.5zm3.3 0L8.2 6.8l-.7-.7-1.3 1.3 2 2 7.5-7.5z" />
    </svg>
  );
}

/** A static WhatsApp conversation: the product in one picture, no JavaScript. */
export function PhoneMockup() {
  return (
    <figure aria-label="Example WhatsApp conversation with YourClaw" className="mx-auto w-full max-w-[20rem]">
      <div className="rounded-[2.5rem] bg-zinc-800 p-2.5 shadow-2xl shadow-brand-500/10 ring-1 ring-white/10">
        <div className="overflow-hidden rounded-[2rem] bg-[#0b141a]">
          <div className="flex items-center gap-3 bg-[#1f2c34] px-4 pb-3 pt-5">
            <span aria-hidden="true" className="grid size-9 place-items-center rounded-full bg-brand-400 text-sm font-bold text-ink-950">Y</span>
            <div className="leading-tight">
              <p className="text-sm font-semibold text-white">YourClaw</p>
              <p className="text-xs text-emerald-300">online</p>
            </div>
          </div>
          <ol className="flex flex-col gap-2 px-3 py-4 text-[13px] leading-snug">
            {conversation.map((m, i) => (
              <li
                key={i}
                className={`max-w-[85%] rounded-lg px-3 py-2 shadow ${
                  m.from === "me" ? "self-end bg-[#005c4b] text-white" : "self-start bg-[#1f2c34] text-zinc-100"
                }`}
              >
                <span className="sr-only">{m.from === "me" ? "You: " : "YourClaw: "}</span>
                {m.text}
                <span className="mt-1 flex items-center justify-end gap-1 text-[10px] text-zinc-300">
                  {m.time} {m.from === "me" ? <Ticks /> : null}
                </span>
              </li>
            ))}
          </ol>
        </div>
      </div>
    </figure>
  );
}
