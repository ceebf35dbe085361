//! G.711 (ITU-T). CONTRACT STUB.

/// The two G.711 companding laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law (PCMU).
    Mu,
    /// A-law (PCMA).
    A,
}

impl Law {
    /// Encodes PCM16 samples (8 kHz mono) to one byte each, appended to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        let _ = (pcm, out);
        todo!()
    }
    /// Decodes bytes to PCM16 samples appended to `out`.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        let _ = (bytes, out);
        todo!()
    }
    /// The byte that encodes silence (0xFF µ-law, 0xD5 A-law).
    pub fn silence(self) -> u8 {
        todo!()
    }
}
