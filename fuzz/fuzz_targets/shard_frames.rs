//! The shard protocol as a peer sends it: arbitrary bytes decoded as a request body, a
//! response body and a length-prefixed frame. Every outcome is an `Ok` or an `Err`,
//! never a panic, and no allocation follows an unchecked length.

#![no_main]

use datamesh_core::wire::{self, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode::<Request>(data);
    let plain = wire::decode::<Response>(data);
    assert_eq!(
        wire::decode_response_shared(&bytes::Bytes::copy_from_slice(data)),
        plain
    );
    let plain = wire::decode_request(data);
    // Read from a shared buffer (as the node's codec does), the same request or error.
    assert_eq!(
        wire::decode_request_shared(&bytes::Bytes::copy_from_slice(data)),
        plain
    );

    // As a stream of frames: split each one off, checking its limit first, and decode it.
    let mut rest = data;
    while let Ok((body, next)) = wire::split_frame(rest, MAX_REQUEST_LEN) {
        if let Ok(request) = wire::decode_request(body) {
            // What decodes is written back by the codec as its plain encoding.
            if let (Ok(parts), Ok(plain)) = (wire::request_parts(&request), wire::encode(&request))
            {
                assert_eq!(joined(&parts), plain);
            }
        }
        if let Ok(response) = wire::decode::<Response>(body) {
            // Written back as the codec writes it: the bytes of its plain encoding (not
            // always `body`: postcard reads varints that are not in their shortest form).
            if let (Ok(parts), Ok(plain)) =
                (wire::response_parts(&response), wire::encode(&response))
            {
                assert_eq!(joined(&parts), plain);
            }
        }
        if next.len() >= rest.len() {
            break;
        }
        rest = next;
    }
    let _ = wire::split_frame(data, MAX_RESPONSE_LEN);
});

/// The body a message's parts write: each head, then its tail.
fn joined(parts: &wire::Parts<'_>) -> Vec<u8> {
    parts
        .iter()
        .flat_map(|(head, tail)| head.iter().chain(tail.iter()))
        .copied()
        .collect()
}
