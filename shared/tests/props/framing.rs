//! Framing (`shared::framing`): the AWS event-stream decoder and the NDJSON splitter give the same
//! output wherever the chunks are cut; encoded messages decode back; a corrupted byte is always
//! refused, never decoded into another message; no input panics.

use super::{config, cut, cuts};
use proptest::prelude::*;
use shared::framing::eventstream::{
    decode_message, encode, Decoder, FrameError, Header, HeaderValue, Message,
};
use shared::framing::ndjson::{LineError, LineSplitter};

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        any::<bool>().prop_map(HeaderValue::Bool),
        any::<i8>().prop_map(HeaderValue::Byte),
        any::<i16>().prop_map(HeaderValue::Short),
        any::<i32>().prop_map(HeaderValue::Int),
        any::<i64>().prop_map(HeaderValue::Long),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(HeaderValue::Bytes),
        ".{0,16}".prop_map(HeaderValue::String),
        any::<i64>().prop_map(HeaderValue::Timestamp),
        any::<[u8; 16]>().prop_map(HeaderValue::Uuid),
    ]
}

fn message() -> impl Strategy<Value = (Vec<Header>, Vec<u8>)> {
    let header = (".{0,12}", header_value()).prop_map(|(name, value)| Header { name, value });
    (
        prop::collection::vec(header, 0..6),
        prop::collection::vec(any::<u8>(), 0..64),
    )
}

/// Every message and the first error of a decoder fed `chunks`, then finished.
fn decode_all(max: usize, chunks: &[&[u8]]) -> (Vec<Message>, Option<FrameError>) {
    let mut d = Decoder::with_max_message_len(max);
    let mut messages = Vec::new();
    let mut error = None;
    for c in chunks {
        for r in d.feed(c) {
            match r {
                Ok(m) => messages.push(m),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
    }
    if let Err(e) = d.finish() {
        error.get_or_insert(e);
    }
    (messages, error)
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn encoded_messages_decode_back_for_any_chunking(
        messages in prop::collection::vec(message(), 0..5),
        at in cuts(10),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (headers, payload) in &messages {
            let frame = encode(headers, payload).unwrap();
            prop_assert_eq!(decode_message(&frame).unwrap(), Message { headers: headers.clone(), payload: payload.clone() });
            wire.extend_from_slice(&frame);
            expected.push(Message { headers: headers.clone(), payload: payload.clone() });
        }
        let (got, error) = decode_all(usize::MAX, &cut(&wire, &at));
        prop_assert_eq!(error, None);
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn a_corrupted_byte_is_refused(msg in message(), at in any::<usize>(), flip in 1u8..=255, chunks in cuts(6)) {
        let (headers, payload) = msg;
        let mut frame = encode(&headers, &payload).unwrap();
        let i = at % frame.len();
        frame[i] ^= flip;
        prop_assert!(decode_message(&frame).is_err(), "byte {} flipped still decodes", i);
        let (got, error) = decode_all(1 << 20, &cut(&frame, &chunks));
        prop_assert!(got.is_empty(), "a corrupted frame decoded into {:?}", got);
        prop_assert!(error.is_some());
    }

    #[test]
    fn arbitrary_bytes_decode_the_same_for_any_chunking(
        input in prop::collection::vec(any::<u8>(), 0..256),
        at in cuts(8),
        max in 16usize..4096,
    ) {
        let _ = decode_message(&input);
        prop_assert_eq!(decode_all(max, &cut(&input, &at)), decode_all(max, &[&input]));
    }

    #[test]
    fn ndjson_lines_do_not_depend_on_the_chunking(
        input in ndjson(),
        at in cuts(12),
        max in 1usize..48,
    ) {
        prop_assert_eq!(split(max, &cut(&input, &at)), split(max, &[&input]));
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        prop_assert_eq!(split(max, &bytes), split(max, &[&input]));
    }

    #[test]
    fn ndjson_lines_come_back_as_written(lines in prop::collection::vec("[^\n\r]{0,30}", 0..8), crlf in any::<bool>()) {
        let sep = if crlf { "\r\n" } else { "\n" };
        let wire = lines.join(sep);
        let got = split(usize::MAX, &[wire.as_bytes()]);
        let expected: Vec<Result<String, LineError>> = lines
            .iter()
            .filter(|l| !l.bytes().all(|b| b.is_ascii_whitespace()))
            .map(|l| Ok(l.clone()))
            .collect();
        prop_assert_eq!(got, expected);
    }
}

fn ndjson() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"  ".to_vec()),
        Just("é😀".as_bytes().to_vec()),
        Just(br#"{"message":{"content":"hi"},"done":false}"#.to_vec()),
        "[ -~]{0,20}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

fn split(max: usize, chunks: &[&[u8]]) -> Vec<Result<String, LineError>> {
    let mut s = LineSplitter::with_max_line_len(max);
    let mut out: Vec<_> = chunks.iter().flat_map(|c| s.feed(c)).collect();
    out.extend(s.finish());
    out
}
