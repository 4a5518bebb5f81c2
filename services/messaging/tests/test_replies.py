from yourclaw_messaging.replies import MAX_BODY_CHARS, split_reply


class TestSplitReply:
    def test_short_text_is_one_part(self):
        assert split_reply("  hello  ") == ["hello"]

    def test_empty_text_is_no_part(self):
        assert split_reply("   ") == []

    def test_cuts_at_sentences_in_order_within_limit(self):
        sentences = [f"Sentence number {i} is here." for i in range(200)]
        text = " ".join(sentences)
        parts = split_reply(text)
        assert len(parts) > 1
        assert all(len(p) <= MAX_BODY_CHARS for p in parts)
        assert all(p.endswith(".") for p in parts)
        assert " ".join(parts) == text

    def test_prefers_paragraphs(self):
        para = "word " * 200
        text = f"{para.strip()}\n\n{para.strip()}\n\n{para.strip()}"
        parts = split_reply(text)
        assert parts == [para.strip()] * 3

    def test_unbroken_text_is_hard_cut(self):
        text = "x" * 4000
        parts = split_reply(text)
        assert [len(p) for p in parts] == [1600, 1600, 800]
        assert "".join(parts) == text
