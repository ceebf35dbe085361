//! HTTP Digest authentication for SIP (RFC 3261 §22, RFC 2617, RFC 7616,
//! RFC 8760: MD5 and SHA-256, qop=auth). CONTRACT STUB.

/// Digest algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (default when absent).
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256 (RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
}

/// Errors parsing a challenge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Not a Digest challenge or missing realm/nonce.
    #[error("bad challenge: {0}")]
    BadChallenge(String),
    /// Algorithm not supported.
    #[error("unsupported digest algorithm `{0}`")]
    Unsupported(String),
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// realm.
    pub realm: String,
    /// nonce.
    pub nonce: String,
    /// opaque, echoed back.
    pub opaque: Option<String>,
    /// algorithm.
    pub algorithm: Algorithm,
    /// qop options offered (`auth`, `auth-int`).
    pub qop: Vec<String>,
    /// stale flag.
    pub stale: bool,
}

impl Challenge {
    /// Parses the header value (`Digest realm="…", nonce="…", …`).
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let _ = value;
        todo!()
    }
}

/// The `Authorization` / `Proxy-Authorization` header value answering `ch`
/// for a request `method` to `uri`. `cnonce` and `nc` are used when qop=auth.
pub fn authorization(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let _ = (ch, username, password, method, uri, cnonce, nc);
    todo!()
}
