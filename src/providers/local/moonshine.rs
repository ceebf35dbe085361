//! Moonshine base-en speech recognition. CONTRACT STUB.
