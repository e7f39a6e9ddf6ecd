"""The SSE decoder: spec line ends, fields, split UTF-8, and the same events for every chunking."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from azml_client._transport import ServerSentEvent, SSEDecoder


def decode_all(chunks: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


def test_basic_events_and_done() -> None:
    raw = b'data: {"a": 1}\n\ndata: [DONE]\n\n'
    assert [e.data for e in decode_all([raw])] == ['{"a": 1}', "[DONE]"]


def test_line_endings_all_three() -> None:
    for end in (b"\n", b"\r\n", b"\r"):
        raw = b"data: one" + end + end + b"data: two" + end + end
        assert [e.data for e in decode_all([raw])] == ["one", "two"], end


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # "data: a\r" | "\n\r\n": the LF after the split CR must not end a second (empty) line early.
    events = decode_all([b"data: a\r", b"\n", b"data: b\r\n\r\n"])
    assert [e.data for e in events] == ["a\nb"]


def test_comments_event_id_retry_and_multiline_data() -> None:
    raw = b": keep-alive\nevent: update\nid: 7\nretry: 1500\ndata: line1\ndata: line2\n\n"
    (event,) = decode_all([raw])
    assert event == ServerSentEvent(data="line1\nline2", event="update", id="7", retry=1500)


def test_field_without_space_and_without_colon() -> None:
    events = decode_all([b"data:x\n\ndata\n\n"])
    assert [e.data for e in events] == ["x", ""]


def test_event_type_resets_but_id_persists() -> None:
    events = decode_all([b"event: a\nid: 1\ndata: x\n\ndata: y\n\n"])
    assert [(e.event, e.id) for e in events] == [("a", "1"), ("message", "1")]


def test_bom_is_stripped_and_empty_events_not_dispatched() -> None:
    events = decode_all([b"\xef\xbb\xbfdata: x\n\n\n\nevent: only-type\n\n"])
    assert [e.data for e in events] == ["x"]


def test_utf8_split_inside_a_character() -> None:
    raw = "data: héllo ✓ 🎉\n\n".encode()
    cut = raw.index("🎉".encode()) + 2
    assert [e.data for e in decode_all([raw[:cut], raw[cut:]])] == ["héllo ✓ 🎉"]


def test_unterminated_last_event_is_kept_on_flush() -> None:
    assert [e.data for e in decode_all([b"data: a\n\ndata: tail"])] == ["a", "tail"]


_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    payloads = draw(st.lists(_texts, min_size=1, max_size=6))
    parts = []
    for payload in payloads:
        if draw(st.booleans()):
            parts.append(": comment" + end)
        if draw(st.booleans()):
            parts.append("event: chunk" + end)
        parts.append("data: " + payload + end + end)
    return "".join(parts).encode(), payloads


@settings(max_examples=300, deadline=None)
@given(streams(), st.data())
def test_same_events_for_every_chunking(stream: tuple[bytes, list[str]], data: st.DataObject) -> None:
    raw, payloads = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=False)]
    whole = decode_all([raw])
    assert [e.data for e in whole] == payloads
    assert decode_all(chunks) == whole
    assert decode_all([bytes([b]) for b in raw]) == whole
