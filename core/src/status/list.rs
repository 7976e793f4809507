//! A decoded status list: the inflated byte array and how many bits each
//! status takes, read as draft-ietf-oauth-status-list §4.1 specifies.
//!
//! Statuses are packed from the least significant bit of each byte: with
//! `bits` = 1, entry 0 is bit 0 of byte 0 and entry 8 is bit 0 of byte 1;
//! with `bits` = 2, entry 0 is bits 0–1 of byte 0 and entry 3 bits 6–7.

use std::io::Read;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The widths a status may have.
pub const BITS: [u8; 4] = [1, 2, 4, 8];

/// An inflated, immutable status list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusList {
    bits: u8,
    bytes: Box<[u8]>,
}

impl StatusList {
    /// A list over `bytes` (already inflated) with `bits` per status.
    pub fn new(bits: u8, bytes: Vec<u8>) -> Result<StatusList, String> {
        if !BITS.contains(&bits) {
            return Err(format!("status_list.bits is {bits}, not one of 1, 2, 4, 8"));
        }
        Ok(StatusList {
            bits,
            bytes: bytes.into_boxed_slice(),
        })
    }

    /// Decode the `lst` member (base64url of ZLIB-compressed bytes),
    /// refusing more than `max_inflated` bytes once inflated.
    pub fn decode(bits: u8, lst: &str, max_inflated: usize) -> Result<StatusList, String> {
        let compressed = URL_SAFE_NO_PAD
            .decode(lst.trim_end_matches('='))
            .map_err(|_| "status_list.lst is not base64url".to_string())?;
        StatusList::new(bits, inflate(&compressed, max_inflated)?)
    }

    /// Bits per status.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Number of statuses the list holds.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64 * 8 / u64::from(self.bits)
    }

    /// Whether it holds no status.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The inflated bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The status at `idx`, or `None` beyond the list.
    #[inline]
    pub fn get(&self, idx: u64) -> Option<u8> {
        let bit = idx.checked_mul(u64::from(self.bits))?;
        let byte = *self.bytes.get(usize::try_from(bit / 8).ok()?)?;
        let mask = ((1u16 << self.bits) - 1) as u8;
        Some((byte >> (bit % 8)) & mask)
    }

    /// How many entries have each status value (index = value).
    pub fn counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; 1 << self.bits];
        for i in 0..self.len() {
            counts[self.get(i).expect("in range") as usize] += 1;
        }
        counts
    }

    /// The ZLIB-compressed, base64url `lst` of these bytes (for the CLI and
    /// tests; the verifier only decodes).
    pub fn encode(&self) -> String {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&self.bytes).expect("writing to a Vec");
        URL_SAFE_NO_PAD.encode(z.finish().expect("writing to a Vec"))
    }
}

/// Inflate ZLIB data, refusing output over `max` bytes: at most `max + 1`
/// bytes are ever produced, whatever the input claims.
fn inflate(compressed: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::ZlibDecoder::new(compressed)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| format!("status_list.lst is not ZLIB data: {e}"))?;
    if out.len() > max {
        return Err(format!("status list inflates to more than {max} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft's §4.1 examples: the `lst` values it gives and the statuses
    /// it says they hold.
    #[test]
    fn the_drafts_examples_decode_to_the_drafts_statuses() {
        let one = StatusList::decode(1, "eNrbuRgAAhcBXQ", 1 << 20).unwrap();
        assert_eq!(one.bytes(), [0xb9, 0xa3]);
        let expect1 = [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1];
        for (i, s) in expect1.iter().enumerate() {
            assert_eq!(one.get(i as u64), Some(*s), "1-bit idx {i}");
        }
        assert_eq!(one.get(16), None);

        let two = StatusList::decode(2, "eNo76fITAAPfAgc", 1 << 20).unwrap();
        assert_eq!(two.bytes(), [0xc9, 0x44, 0xf9]);
        let expect2 = [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3];
        for (i, s) in expect2.iter().enumerate() {
            assert_eq!(two.get(i as u64), Some(*s), "2-bit idx {i}");
        }
        assert_eq!(two.len(), 12);
    }

    #[test]
    fn every_width_round_trips() {
        for bits in BITS {
            let n = 1000u64;
            let per = 8 / bits as u64;
            let mut bytes = vec![0u8; (n / per) as usize];
            let value = |i: u64| ((i * 7 + 3) % (1 << bits)) as u8;
            for i in 0..n {
                let bit = i * bits as u64;
                bytes[(bit / 8) as usize] |= value(i) << (bit % 8);
            }
            let list = StatusList::new(bits, bytes).unwrap();
            let decoded = StatusList::decode(bits, &list.encode(), 1 << 20).unwrap();
            assert_eq!(decoded.len(), n);
            for i in 0..n {
                assert_eq!(decoded.get(i), Some(value(i)), "bits {bits} idx {i}");
            }
            assert_eq!(decoded.get(n), None);
            assert_eq!(decoded.get(u64::MAX), None);
        }
    }

    #[test]
    fn a_zlib_bomb_is_refused_without_inflating_it() {
        let huge = StatusList::new(1, vec![0u8; 64 << 20]).unwrap().encode();
        assert!(
            huge.len() < 128 * 1024,
            "64 MiB of zeros compresses small: {}",
            huge.len()
        );
        let e = StatusList::decode(1, &huge, 16 << 20).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn bad_widths_and_bad_data_are_refused() {
        assert!(StatusList::new(3, vec![0]).is_err());
        assert!(StatusList::new(0, vec![0]).is_err());
        assert!(StatusList::decode(1, "not base64!", 100).is_err());
        assert!(StatusList::decode(1, "AAAA", 100).is_err(), "not zlib");
    }
}
