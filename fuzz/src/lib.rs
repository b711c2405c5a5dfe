//! What several fuzz targets share.

/// `input` cut into pieces of 1 to 9 bytes, their sizes drawn from a small
/// xorshift seeded by the fuzzer's `seed`: how a target feeds a parser the
/// way reads off a socket would.
pub fn pieces(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut pieces = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 9 + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    pieces
}
