//! Piper VITS text-to-speech. CONTRACT STUB.
