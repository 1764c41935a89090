//! Reading choices out of fuzz bytes.
//!
//! Structure-aware targets read their input as a sequence of small decisions (a kind, a
//! count, a length-prefixed string). Past the end every read gives zeros or an empty slice,
//! so any byte string is a valid input, and libFuzzer's mutations of one field leave the
//! others readable. Integers are little-endian.

/// A cursor over fuzz bytes.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes left.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    /// A flag (the low bit of one byte).
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Two bytes.
    pub fn u16(&mut self) -> u16 {
        let mut b = [0u8; 2];
        let got = self.bytes(2);
        b[..got.len()].copy_from_slice(got);
        u16::from_le_bytes(b)
    }

    /// Four bytes.
    pub fn u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        let got = self.bytes(4);
        b[..got.len()].copy_from_slice(got);
        u32::from_le_bytes(b)
    }

    /// Eight bytes.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    /// Bytes prefixed by a one-byte length.
    pub fn short_bytes(&mut self) -> &'a [u8] {
        let n = self.u8() as usize;
        self.bytes(n)
    }

    /// Bytes prefixed by a two-byte length.
    pub fn long_bytes(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.bytes(n)
    }

    /// Bytes up to (not including) the first `sep`, which is consumed; everything left when
    /// there is none.
    pub fn until(&mut self, sep: u8) -> &'a [u8] {
        match self.data.iter().position(|&b| b == sep) {
            Some(i) => {
                let head = &self.data[..i];
                self.data = &self.data[i + 1..];
                head
            }
            None => self.rest(),
        }
    }
}

/// Writes the same encodings [`Input`] reads, for seed inputs.
#[derive(Debug, Default, Clone)]
pub struct Output {
    /// The bytes so far.
    pub bytes: Vec<u8>,
}

impl Output {
    /// One byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    /// Two bytes.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Four bytes.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Eight bytes.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Raw bytes.
    pub fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(b);
        self
    }

    /// Bytes with a one-byte length (cut to 255).
    pub fn short_bytes(&mut self, b: &[u8]) -> &mut Self {
        let b = &b[..b.len().min(255)];
        self.u8(b.len() as u8).raw(b)
    }

    /// Bytes with a two-byte length (cut to 65535).
    pub fn long_bytes(&mut self, b: &[u8]) -> &mut Self {
        let b = &b[..b.len().min(65535)];
        self.u16(b.len() as u16).raw(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_output_writes_and_zeros_past_the_end() {
        let mut o = Output::default();
        o.u8(7).u16(300).u32(70_000).u64(u64::MAX).short_bytes(b"abc").long_bytes(b"defg").raw(b"x\ny");
        let mut i = Input::new(&o.bytes);
        assert_eq!((i.u8(), i.u16(), i.u32(), i.u64()), (7, 300, 70_000, u64::MAX));
        assert_eq!((i.short_bytes(), i.long_bytes()), (&b"abc"[..], &b"defg"[..]));
        assert_eq!((i.until(b'\n'), i.until(b'\n')), (&b"x"[..], &b"y"[..]));
        assert!(i.is_empty());
        assert_eq!((i.u8(), i.u64(), i.short_bytes()), (0, 0, &b""[..]));
    }
}
