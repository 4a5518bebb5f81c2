"""The user's channels as the dashboard shows them (docs/channels.md): where
they can be reached, where proactive messages go, and the phone claim's
WhatsApp-or-SMS answer."""
