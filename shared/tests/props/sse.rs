//! SSE (`shared::sse`): the events do not depend on where the chunks are cut, with or without the size
//! cap; no input panics; what `write_event` writes parses back to the same event.

use super::{config, cut, cuts};
use proptest::prelude::*;
use shared::sse::{write_event, SseEvent, SseParser};

fn parse(limit: usize, chunks: &[&[u8]]) -> (Vec<SseEvent>, bool) {
    let mut p = SseParser::with_limit(limit);
    let mut out: Vec<SseEvent> = chunks.iter().flat_map(|c| p.feed(c)).collect();
    out.extend(p.finish());
    (out, p.overflowed())
}

/// Pieces an SSE stream is made of, including the awkward ones (CR alone, CRLF, BOM, split UTF-8,
/// comments, fields without a colon), mixed with arbitrary bytes.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"event:message_delta".to_vec()),
        Just(b": keep-alive".to_vec()),
        Just(b"id: 7".to_vec()),
        Just(b"retry".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just("\u{feff}".as_bytes().to_vec()),
        Just("é€😀".as_bytes().to_vec()),
        Just(br#"{"type":"content_block_delta","delta":{"text":"hi"}}"#.to_vec()),
        "[ -~]{0,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn any_chunking_gives_the_same_events(input in stream(), at in cuts(12)) {
        let whole = parse(usize::MAX, &[&input]);
        prop_assert_eq!(&parse(usize::MAX, &cut(&input, &at)), &whole);
        // One byte at a time: the hardest cut of all.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(&parse(usize::MAX, &bytes), &whole);
    }

    #[test]
    fn any_chunking_gives_the_same_events_under_the_cap(input in stream(), at in cuts(12), limit in 1usize..64) {
        let whole = parse(limit, &[&input]);
        prop_assert_eq!(parse(limit, &cut(&input, &at)), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512), at in cuts(8)) {
        let whole = parse(usize::MAX, &[&input]);
        prop_assert_eq!(parse(usize::MAX, &cut(&input, &at)), whole);
    }

    #[test]
    fn written_events_parse_back(name in proptest::option::of(".{0,12}"), data in ".{0,40}", at in cuts(6)) {
        let mut out = Vec::new();
        write_event(&mut out, name.as_deref(), &data);
        let (events, _) = parse(usize::MAX, &cut(&out, &at));
        let name: Option<String> = name
            .map(|n| n.replace(['\r', '\n'], ""))
            .filter(|n| !n.is_empty());
        let data = data.replace("\r\n", "\n").replace('\r', "\n");
        prop_assert_eq!(events, vec![SseEvent { event: name, data }]);
    }
}
