//! zstd, skipped cheaply for data that would not shrink.
//!
//! Compressing costs ~4x the rest of the pipeline on text and gains nothing on media or
//! ciphertext, so a sample of each chunk is compressed first (NOTES-deps.md): only chunks
//! whose sample shrinks are compressed whole.

/// Bytes of each chunk compressed to decide whether the whole chunk is worth it.
const PROBE_BYTES: usize = 64 * 1024;
/// A probe that keeps more than this fraction of its size marks the chunk incompressible.
const PROBE_KEEP_RATIO: f64 = 0.90;
/// A compressed chunk must save at least 3% or it is stored raw (decompression is not free).
const MIN_SAVING_RATIO: f64 = 0.97;
/// zstd's own default: on text ~6% smaller than level 1 for ~15% more time (about 500 MB/s
/// per core here); the probe keeps it off incompressible data.
pub const DEFAULT_LEVEL: i32 = 3;

/// The chunk compressed with zstd at `level`, or `None` when storing it raw is better.
pub fn compress(chunk: &[u8], level: i32) -> Option<Vec<u8>> {
    if chunk.len() > PROBE_BYTES {
        // The middle avoids headers (file formats often start with a compressible preamble).
        let start = (chunk.len() - PROBE_BYTES) / 2;
        let sample = &chunk[start..start + PROBE_BYTES];
        let probe = zstd_compress(sample, level)?;
        if probe.len() as f64 > PROBE_KEEP_RATIO * sample.len() as f64 {
            return None;
        }
    }
    let packed = zstd_compress(chunk, level)?;
    (packed.len() as f64 <= MIN_SAVING_RATIO * chunk.len() as f64).then_some(packed)
}

thread_local! {
    /// This thread's zstd context and its level: made once, not per chunk (a context is
    /// hundreds of KiB to allocate and set up, more than compressing a small chunk costs).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, compressor) = slot.as_mut()?;
        compressor.compress(data).ok()
    })
}

/// Reverses [`compress`]; `raw_len` is the chunk's original size (bounds the output).
pub fn decompress(packed: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    let out = zstd::bulk::decompress(packed, raw_len)?;
    if out.len() != raw_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "decompressed size differs from the recorded size",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_compressed_and_random_data_is_not() {
        let text: Vec<u8> =
            b"the quick brown fox jumps over the lazy dog. ".iter().copied().cycle().take(1 << 20).collect();
        let packed = compress(&text, DEFAULT_LEVEL).expect("text compresses");
        assert!(packed.len() < text.len() / 10);
        assert_eq!(decompress(&packed, text.len()).unwrap(), text);

        let random: Vec<u8> =
            (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 3) as u8).collect();
        let noise = rewind_crypto::aead::seal(&[9; 32], b"", &random).unwrap();
        assert!(compress(&noise, DEFAULT_LEVEL).is_none(), "ciphertext is stored raw");
    }

    #[test]
    fn a_wrong_recorded_size_is_an_error() {
        let packed = compress(&[b'a'; 10_000], DEFAULT_LEVEL).unwrap();
        assert!(decompress(&packed, 9_999).is_err());
    }
}
