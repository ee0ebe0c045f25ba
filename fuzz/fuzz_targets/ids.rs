//! Ids typed by users and read from the API (`dm1…` file ids, hex shard and key ids).
//! Must hold: parsing never panics; a parsed id prints to text that parses to it again.
#![no_main]

use std::str::FromStr;

use datamesh_core::{FileId, KeyId, ShardId};
use libfuzzer_sys::fuzz_target;

fn round_trip<T>(text: &str)
where
    T: FromStr + ToString + PartialEq + std::fmt::Debug,
{
    if let Ok(id) = T::from_str(text) {
        let printed = id.to_string();
        assert_eq!(T::from_str(&printed).ok(), Some(id), "{printed}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    round_trip::<FileId>(&text);
    round_trip::<ShardId>(&text);
    round_trip::<KeyId>(&text);
});
