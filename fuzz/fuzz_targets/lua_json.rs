//! Fuzz target: arbitrary bytes through the Lua scripts' `json.decode`
//! (request bodies are what scripts decode), then `json.encode` of what it
//! made. Checks that neither panics; that whatever `decode` accepts,
//! `encode` writes (the mapping is documented to round-trip: arrays keep
//! their `json.null`s and `[]` stays an array, nesting up to the parser's
//! limit is written back); and that the text it writes decodes and encodes
//! to itself again.
//!
//! Input layout: the whole input is the JSON text.

#![no_main]

use axkit_lua::fuzzing::Json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fresh state for each input: one kept across inputs shows up in the
    // fuzzer's leak check.
    let json = Json::new().expect("a Lua state with json");
    let Some(first) = json.round_trip(data) else {
        return;
    };
    let text = first.unwrap_or_else(|e| panic!("decoded but not encoded: {e}"));
    let again = json.round_trip(text.as_bytes());
    assert_eq!(again, Some(Ok(text.clone())), "{text}");
});
