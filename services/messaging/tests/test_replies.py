from yourclaw_messaging import replies
from yourclaw_messaging.channels.whatsapp import MAX_BODY_CHARS
from yourclaw_messaging.replies import counted, limit_per, split_reply


class TestSplitReply:
    def test_short_text_is_one_part(self):
        assert split_reply("  hello  ", MAX_BODY_CHARS) == ["hello"]

    def test_empty_text_is_no_part(self):
        assert split_reply("   ", MAX_BODY_CHARS) == []

    def test_cuts_at_sentences_in_order_within_limit(self):
        sentences = [f"Sentence number {i} is here." for i in range(200)]
        text = " ".join(sentences)
        parts = split_reply(text, MAX_BODY_CHARS)
        assert len(parts) > 1
        assert all(len(p) <= MAX_BODY_CHARS for p in parts)
        assert all(p.endswith(".") for p in parts)
        assert " ".join(parts) == text

    def test_prefers_paragraphs(self):
        para = "word " * 200
        text = f"{para.strip()}\n\n{para.strip()}\n\n{para.strip()}"
        parts = split_reply(text, MAX_BODY_CHARS)
        assert parts == [para.strip()] * 3

    def test_unbroken_text_is_hard_cut(self):
        text = "x" * 4000
        parts = split_reply(text, MAX_BODY_CHARS)
        assert [len(p) for p in parts] == [1600, 1600, 800]
        assert "".join(parts) == text


class TestCounted:
    def test_one_is_singular_and_the_rest_plural(self):
        assert counted(1, "reply", "replies") == "1 reply"
        assert counted(0, "reply", "replies") == "0 replies"
        assert counted(2, "message") == "2 messages"
        assert counted(12345, "token") == "12,345 tokens"

    def test_limits_read_as_sentences(self):
        assert limit_per(1, "minute") == "1 message a minute"
        assert limit_per(100, "day") == "100 messages a day"
        assert limit_per(0, "minute") == "no limit per minute"

    def test_status_with_ones_reads_naturally(self):
        text = replies.STATUS.format(
            status="ready",
            model="Claude",
            inbound=counted(1, "message"),
            outbound=counted(1, "reply", "replies"),
            tokens=counted(1, "token"),
            per_min=limit_per(1, "minute"),
            per_day=limit_per(0, "day"),
            token_limit="",
            month="$0.00 of $8.00 (0%), 0 tokens",
        )
        assert "*Today*: 1 message from you, 1 reply, 1 token" in text
        assert "*Limits*: 1 message a minute, no limit per day" in text
        notice = replies.RATE_LIMITED.format(
            limit=counted(1, "message"), period="day", when="tomorrow"
        )
        assert notice.startswith("You've reached your limit of 1 message per day.")
