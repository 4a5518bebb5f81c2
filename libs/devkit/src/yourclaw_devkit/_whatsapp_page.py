"""The WhatsApp simulator: a local page where a developer chats as any phone number.

Typing a message makes the stand-in do what Twilio does for a real WhatsApp
message: a signed form POST to gateway-api's webhook (with an uploaded image as
`MediaUrl0`, served by the Media stand-in). Replies, templates and proactive
messages show up as messaging sends them to the Messages stand-in; while the
page is visible, what was delivered is read (signed `read` status callbacks).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from yourclaw_common.logging import get_logger

from yourclaw_devkit.twilio_sim import (
    API_VERSION,
    MediaStore,
    MessageStore,
    StatusCallbacks,
    inbound_whatsapp_form,
    post_webhook,
)

__all__ = ["whatsapp_page_router"]

log = get_logger(__name__)

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MAX_IMAGE_BYTES = 5 * 1024 * 1024


class _Sent:
    """What simulated users wrote, oldest first (the Messages store holds replies)."""

    def __init__(self, max_records: int = 10_000):
        self._lock = threading.Lock()
        self._items: deque[dict[str, Any]] = deque(maxlen=max_records)

    def add(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(item)

    def of(self, phone: str) -> list[dict[str, Any]]:
        with self._lock:
            return [i for i in self._items if i["phone"] == phone]


def whatsapp_page_router(
    *,
    account_sid: str,
    auth_token: str,
    whatsapp_number: str,
    webhook_url: str,
    store: MessageStore,
    media: MediaStore,
    callbacks: StatusCallbacks,
) -> APIRouter:
    """`/_devsim/whatsapp` (the page) and the JSON routes it calls."""
    router = APIRouter()
    sent = _Sent()

    @router.get("/_devsim/whatsapp", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_PAGE)

    @router.post("/_devsim/whatsapp/send")
    async def send(request: Request) -> Response:
        """`{"from": "+1555…", "body": "…", "image"?: base64, "image_type"?: "image/png"}`"""
        try:
            spec = orjson.loads(await request.body())
            phone = str(spec["from"]).strip()
            body = str(spec.get("body") or "")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return JSONResponse({"detail": "expected {from, body}"}, status_code=400)
        if not _E164.match(phone):
            return JSONResponse(
                {"detail": "from must be an E.164 number like +15551234567"},
                status_code=400,
            )
        message_sid = "SM" + secrets.token_hex(16)
        form = inbound_whatsapp_form(
            phone=phone,
            body=body,
            to=whatsapp_number,
            account_sid=account_sid,
            message_sid=message_sid,
            profile_name="Simulator",
        )
        if spec.get("image"):
            try:
                data = base64.b64decode(str(spec["image"]), validate=True)
            except (binascii.Error, ValueError):
                return JSONResponse({"detail": "image is not base64"}, status_code=400)
            if len(data) > _MAX_IMAGE_BYTES:
                return JSONResponse({"detail": "image over 5 MB"}, status_code=400)
            content_type = str(spec.get("image_type") or "image/jpeg")
            media_sid = media.add(data, content_type)
            base = str(request.base_url).rstrip("/")
            form.update(
                {
                    "NumMedia": "1",
                    "MessageType": "image",
                    "MediaContentType0": content_type,
                    "MediaUrl0": f"{base}/{API_VERSION}/Accounts/{account_sid}"
                    f"/Messages/{message_sid}/Media/{media_sid}",
                }
            )
        answer = await post_webhook(webhook_url, form, auth_token)
        if isinstance(answer, JSONResponse):
            return answer
        sent.add(
            {
                "phone": phone,
                "sid": message_sid,
                "body": body,
                "image": bool(spec.get("image")),
                "at": datetime.now(UTC).isoformat(),
                "webhook_status": answer.status_code,
            }
        )
        return JSONResponse(
            {"sid": message_sid, "webhook_status": answer.status_code},
            status_code=200 if answer.status_code == 200 else 502,
        )

    @router.post("/_devsim/whatsapp/read")
    async def read(phone: str) -> dict[str, int]:
        """The user has the chat open: what was delivered to `phone` is read."""
        return {
            "read": callbacks.read(
                m for m in store.newest_first() if m.to == f"whatsapp:{phone}"
            )
        }

    @router.get("/_devsim/whatsapp/thread")
    async def thread(phone: str) -> dict[str, Any]:
        """Both sides of one phone's chat, oldest first."""
        items: list[dict[str, Any]] = [
            {
                "direction": "in",
                "sid": i["sid"],
                "body": i["body"] + (" [image]" if i["image"] else ""),
                "at": i["at"],
                "status": "received"
                if i["webhook_status"] == 200
                else f"webhook {i['webhook_status']}",
            }
            for i in sent.of(phone)
        ]
        for m in reversed(store.newest_first()):
            if m.to != f"whatsapp:{phone}":
                continue
            items.append(
                {
                    "direction": "out",
                    "sid": m.sid,
                    "body": m.body,
                    # A voice reply: the link Twilio would fetch the audio from.
                    "media": list(m.media_urls),
                    "template": m.content_sid,
                    "at": m.date_created.isoformat(),
                    "status": m.status,
                }
            )
        # Stable: within one second, what the user wrote comes first.
        items.sort(key=lambda i: (i["at"][:19], i["direction"] == "out"))
        return {"phone": phone, "messages": items}

    return router


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>YourClaw WhatsApp simulator</title>
<style>
 body{margin:0;font:15px system-ui,sans-serif;background:#efeae2;display:flex;
      flex-direction:column;height:100vh}
 header{background:#075e54;color:#fff;padding:10px 14px;display:flex;gap:8px;
        align-items:center}
 header input{font:inherit;padding:4px 6px;border-radius:4px;border:0;width:11em}
 #log{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:6px}
 .msg{max-width:75%;padding:6px 9px;border-radius:8px;white-space:pre-wrap;
      box-shadow:0 1px 1px #0002}
 .in{align-self:flex-end;background:#d9fdd3}
 .out{align-self:flex-start;background:#fff}
 .meta{font-size:11px;color:#667;margin-top:3px}
 .tpl{border-left:3px solid #25d366}
 form{display:flex;gap:6px;padding:8px;background:#f0f2f5}
 form input[type=text]{flex:1;font:inherit;padding:8px;border-radius:18px;border:0}
 button{font:inherit;background:#075e54;color:#fff;border:0;border-radius:18px;
        padding:0 16px}
</style></head><body>
<header><b>WhatsApp simulator</b> as
 <input id="phone" value="+15551234567" aria-label="your phone number">
 <span id="err"></span></header>
<div id="log" aria-live="polite"></div>
<form id="f"><input type="file" id="img" accept="image/*" aria-label="image">
 <input type="text" id="body" placeholder="Type a message, /help for commands"
  autocomplete="off"><button>Send</button></form>
<script>
const $=id=>document.getElementById(id);
$('phone').value=localStorage.getItem('wa-phone')||$('phone').value;
$('phone').onchange=()=>{localStorage.setItem('wa-phone',$('phone').value);refresh()};
async function refresh(){
  const r=await fetch('/_devsim/whatsapp/thread?phone='+encodeURIComponent($('phone').value));
  if(!r.ok)return;
  const {messages}=await r.json();const log=$('log');
  const atEnd=log.scrollTop+log.clientHeight>=log.scrollHeight-20;
  log.replaceChildren(...messages.map(m=>{
    const d=document.createElement('div');
    d.className='msg '+m.direction+(m.template?' tpl':'');
    d.textContent=m.body;
    for(const url of m.media||[]){const a=document.createElement('audio');
      a.controls=true;a.src=url;a.title='voice message';
      if(m.body)d.append(document.createElement('br'));
      d.append('voice message ',a);}
    const meta=document.createElement('div');meta.className='meta';
    meta.textContent=(m.template?'template '+m.template+' · ':'')+m.status+' · '
      +new Date(m.at).toLocaleTimeString();
    d.append(meta);return d;}));
  if(atEnd)log.scrollTop=log.scrollHeight;
  // Looking at the chat reads it: WhatsApp's read receipts (blue ticks).
  if(document.visibilityState==='visible'
     &&messages.some(m=>m.direction==='out'&&m.status==='delivered'))
    fetch('/_devsim/whatsapp/read?phone='+encodeURIComponent($('phone').value),
      {method:'POST'});
}
$('f').onsubmit=async e=>{
  e.preventDefault();const body=$('body').value;const file=$('img').files[0];
  if(!body&&!file)return;
  const payload={from:$('phone').value,body};
  if(file){const buf=new Uint8Array(await file.arrayBuffer());let s='';
    for(const b of buf)s+=String.fromCharCode(b);
    payload.image=btoa(s);payload.image_type=file.type||'image/jpeg';}
  const r=await fetch('/_devsim/whatsapp/send',{method:'POST',
    headers:{'content-type':'application/json'},body:JSON.stringify(payload)});
  $('err').textContent=r.ok?'':(await r.json()).detail;
  $('body').value='';$('img').value='';refresh();
};
refresh();setInterval(refresh,1000);
</script></body></html>
"""
