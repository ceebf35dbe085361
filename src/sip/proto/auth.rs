//! HTTP Digest authentication for SIP (RFC 3261 §22.4, RFC 2617, RFC 7616,
//! RFC 8760): MD5, MD5-sess, SHA-256 and SHA-256-sess, with `qop=auth` or
//! the legacy RFC 2069 mode when the challenge offers no qop.
//!
//! Client side: [`Challenge::parse`] reads a `WWW-Authenticate` /
//! `Proxy-Authenticate` value and [`authorization`] builds the matching
//! `Authorization` / `Proxy-Authorization` value. Server side (registrar):
//! [`Credentials::parse`] reads an `Authorization` value and
//! [`Credentials::verify`] / [`verify`] recompute the response.
//!
//! The computation (RFC 7616 §3.4.1–3.4.3, RFC 2617 §3.2.2):
//! ```text
//! A1       = username ":" realm ":" password
//! HA1      = H(A1)                              (MD5, SHA-256)
//!          = H(H(A1) ":" nonce ":" cnonce)      (-sess variants)
//! HA2      = H(method ":" digest-uri)           (qop=auth or no qop)
//! response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)   qop=auth
//!          = H(HA1 ":" nonce ":" HA2)                             no qop
//! ```
//! `qop=auth-int` (hash of the body) is not supported: a challenge offering
//! only `auth-int` is answered in legacy mode, and credentials using it do
//! not verify.
//!
//! Parsing is pure and total: any input returns a value or an
//! [`AuthError`], never panics.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Digest algorithms (the `algorithm` parameter, case-insensitive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (default when absent).
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
}

/// Errors parsing a challenge or credentials.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Not a Digest challenge, malformed parameters, or missing realm/nonce.
    #[error("bad challenge: {0}")]
    BadChallenge(String),
    /// Algorithm not supported (e.g. `SHA-512-256`).
    #[error("unsupported digest algorithm `{0}`")]
    Unsupported(String),
    /// Not Digest credentials, malformed parameters, or a required
    /// parameter (username, realm, nonce, uri, response; cnonce and nc with
    /// qop) missing or invalid.
    #[error("bad credentials: {0}")]
    BadCredentials(String),
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// realm (unquoted).
    pub realm: String,
    /// nonce (unquoted).
    pub nonce: String,
    /// opaque, echoed back unchanged.
    pub opaque: Option<String>,
    /// algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// qop options offered (`auth`, `auth-int`), in the server's order.
    pub qop: Vec<String>,
    /// stale flag (`stale=true`: retry with the new nonce, same password).
    pub stale: bool,
}

/// Parsed `Authorization` / `Proxy-Authorization` Digest credentials, for a
/// registrar or proxy to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// username.
    pub username: String,
    /// realm; the caller checks it is its own.
    pub realm: String,
    /// nonce; the caller checks it is one it issued and still fresh.
    pub nonce: String,
    /// digest-uri as sent (RFC 3261 §22.4: the Request-URI).
    pub uri: String,
    /// response, lowercase hex (32 digits MD5, 64 digits SHA-256).
    pub response: String,
    /// algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// cnonce; present when `qop` is.
    pub cnonce: Option<String>,
    /// nonce count as sent: 8 hex digits; present when `qop` is.
    pub nc: Option<String>,
    /// qop chosen by the client (`auth`), if any.
    pub qop: Option<String>,
    /// opaque echoed by the client.
    pub opaque: Option<String>,
}

impl Algorithm {
    /// Parses an `algorithm` value, case-insensitively. `None` if unknown.
    pub fn parse(name: &str) -> Option<Algorithm> {
        [
            Algorithm::Md5,
            Algorithm::Md5Sess,
            Algorithm::Sha256,
            Algorithm::Sha256Sess,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(name))
    }

    /// The canonical token (`MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether this is a `-sess` variant (HA1 mixes in nonce and cnonce).
    pub fn is_session(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

impl Challenge {
    /// Parses the header value (`Digest realm="…", nonce="…", …`).
    ///
    /// Parameter names are case-insensitive, values are tokens or quoted
    /// strings (with `\` escapes; commas inside quotes are kept), unknown
    /// parameters are ignored.
    ///
    /// Errors: [`AuthError::BadChallenge`] for another scheme, malformed
    /// parameters, or a missing realm/nonce; [`AuthError::Unsupported`] for
    /// an unknown algorithm.
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let params = parse_digest_params(value).map_err(AuthError::BadChallenge)?;
        let get = |name: &str| find_param(&params, name);
        let realm = get("realm").ok_or_else(|| AuthError::BadChallenge("no realm".into()))?;
        let nonce = get("nonce").ok_or_else(|| AuthError::BadChallenge("no nonce".into()))?;
        let algorithm = match get("algorithm") {
            None => Algorithm::Md5,
            Some(name) => {
                Algorithm::parse(name).ok_or_else(|| AuthError::Unsupported(name.to_owned()))?
            }
        };
        let qop = get("qop")
            .map(|q| {
                q.split(',')
                    .map(str::trim)
                    .filter(|q| !q.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Challenge {
            realm: realm.to_owned(),
            nonce: nonce.to_owned(),
            opaque: get("opaque").map(str::to_owned),
            algorithm,
            qop,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// The header value for a `WWW-Authenticate` / `Proxy-Authenticate`
    /// field carrying this challenge (server side, RFC 7616 §3.3, RFC 8760
    /// §2.4): `Digest realm="…", nonce="…", algorithm=…[, qop="…"][,
    /// opaque="…"][, stale=true]`. [`Challenge::parse`] reads it back.
    pub fn to_header_value(&self) -> String {
        let mut out = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm={}",
            escape(&self.realm),
            escape(&self.nonce),
            self.algorithm.as_str()
        );
        if !self.qop.is_empty() {
            out.push_str(&format!(", qop=\"{}\"", escape(&self.qop.join(","))));
        }
        if let Some(opaque) = &self.opaque {
            out.push_str(&format!(", opaque=\"{}\"", escape(opaque)));
        }
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }

    /// Whether the challenge offers `qop=auth` (case-insensitive).
    pub fn offers_auth_qop(&self) -> bool {
        self.qop.iter().any(|q| q.eq_ignore_ascii_case("auth"))
    }
}

/// The `Authorization` / `Proxy-Authorization` header value answering `ch`
/// for a request `method` to `uri` (the Request-URI, RFC 3261 §22.4).
///
/// With `qop=auth` offered, the answer uses `cnonce` (client nonce; any
/// string without `"`) and `nc` (how many requests used this nonce,
/// starting at 1; sent as 8 hex digits); otherwise the legacy RFC 2069
/// response is computed and `cnonce` is only used by `-sess` algorithms.
/// Parameters are written in the order `username, realm, nonce, uri,
/// response, algorithm, cnonce, opaque, qop, nc`.
pub fn authorization(
    ch: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let alg = ch.algorithm;
    let nc_hex = format!("{nc:08x}");
    let qop = ch.offers_auth_qop().then_some("auth");
    let ha1 = session_ha1(
        alg,
        &ha1(alg, username, &ch.realm, password),
        &ch.nonce,
        cnonce,
    );
    let response = response(
        alg,
        &ha1,
        &ch.nonce,
        qop.map(|q| (nc_hex.as_str(), cnonce, q)),
        method,
        uri,
    );

    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        escape(username),
        escape(&ch.realm),
        escape(&ch.nonce),
        escape(uri),
        response,
        alg.as_str(),
    );
    if qop.is_some() || alg.is_session() {
        out.push_str(&format!(", cnonce=\"{}\"", escape(cnonce)));
    }
    if let Some(opaque) = &ch.opaque {
        out.push_str(&format!(", opaque=\"{}\"", escape(opaque)));
    }
    if let Some(qop) = qop {
        out.push_str(&format!(", qop={qop}, nc={nc_hex}"));
    }
    out
}

/// HA1 = H(username ":" realm ":" password), lowercase hex, with the hash of
/// `algorithm` (a `-sess` algorithm uses its base hash here; the session
/// step needs nonce and cnonce, see [`Credentials::verify_ha1`]). This is
/// what a registrar may store instead of the password.
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    hash(algorithm, &format!("{username}:{realm}:{password}"))
}

/// Checks an `Authorization` / `Proxy-Authorization` header value against
/// `password` for a request with `method`: parses it ([`Credentials::parse`])
/// and recomputes the response ([`Credentials::verify`]). `false` on any
/// parse error.
///
/// It does NOT check that realm and nonce are the server's own and fresh,
/// nor that `nc` increases: parse with [`Credentials::parse`] to do that.
pub fn verify(authorization_value: &str, password: &str, method: &str) -> bool {
    Credentials::parse(authorization_value).is_ok_and(|c| c.verify(password, method))
}

impl Credentials {
    /// Parses an `Authorization` value (`Digest username="…", …`), with the
    /// same parameter syntax as [`Challenge::parse`].
    ///
    /// Errors: [`AuthError::BadCredentials`] for another scheme, malformed
    /// parameters, a missing username/realm/nonce/uri/response, or `qop`
    /// without `cnonce` and an 8-hex-digit `nc`; [`AuthError::Unsupported`]
    /// for an unknown algorithm.
    pub fn parse(value: &str) -> Result<Credentials, AuthError> {
        let params = parse_digest_params(value).map_err(AuthError::BadCredentials)?;
        let get = |name: &str| find_param(&params, name).map(str::to_owned);
        let required =
            |name: &str| get(name).ok_or_else(|| AuthError::BadCredentials(format!("no {name}")));
        let algorithm = match find_param(&params, "algorithm") {
            None => Algorithm::Md5,
            Some(name) => {
                Algorithm::parse(name).ok_or_else(|| AuthError::Unsupported(name.to_owned()))?
            }
        };
        let creds = Credentials {
            username: required("username")?,
            realm: required("realm")?,
            nonce: required("nonce")?,
            uri: required("uri")?,
            response: required("response")?.to_ascii_lowercase(),
            algorithm,
            cnonce: get("cnonce"),
            nc: get("nc"),
            qop: get("qop"),
            opaque: get("opaque"),
        };
        if creds.qop.is_some() {
            if creds.cnonce.is_none() {
                return Err(AuthError::BadCredentials("qop without cnonce".into()));
            }
            let nc_ok = creds
                .nc
                .as_deref()
                .is_some_and(|nc| nc.len() == 8 && nc.bytes().all(|b| b.is_ascii_hexdigit()));
            if !nc_ok {
                return Err(AuthError::BadCredentials(
                    "qop without an 8-digit nc".into(),
                ));
            }
        }
        Ok(creds)
    }

    /// The nonce count as a number (for replay checks), if sent.
    pub fn nonce_count(&self) -> Option<u32> {
        u32::from_str_radix(self.nc.as_deref()?, 16).ok()
    }

    /// Recomputes the response from `password` and the request `method`
    /// and compares it in constant time. `false` for `qop=auth-int`.
    pub fn verify(&self, password: &str, method: &str) -> bool {
        let base = ha1(self.algorithm, &self.username, &self.realm, password);
        self.verify_ha1(&base, method)
    }

    /// As [`verify`](Credentials::verify), from a stored HA1 (see [`ha1`];
    /// for `-sess` algorithms the base HA1, the session step is applied
    /// here).
    pub fn verify_ha1(&self, ha1_hex: &str, method: &str) -> bool {
        let cnonce = self.cnonce.as_deref().unwrap_or("");
        let ha1 = session_ha1(
            self.algorithm,
            &ha1_hex.to_ascii_lowercase(),
            &self.nonce,
            cnonce,
        );
        let qop = match self.qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (self.nc.as_deref(), self.cnonce.as_deref()) else {
                    return false;
                };
                Some((nc, cnonce, q))
            }
            Some(_) => return false,
        };
        let expected = response(self.algorithm, &ha1, &self.nonce, qop, method, &self.uri);
        constant_time_eq(expected.as_bytes(), self.response.as_bytes())
    }
}

/// Lowercase hex digest of `data` with the hash of `alg`.
fn hash(alg: Algorithm, data: &str) -> String {
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
        Algorithm::Sha256 | Algorithm::Sha256Sess => hex::encode(Sha256::digest(data.as_bytes())),
    }
}

/// Applies the `-sess` step to a base HA1 (identity for other algorithms).
fn session_ha1(alg: Algorithm, base_ha1: &str, nonce: &str, cnonce: &str) -> String {
    if alg.is_session() {
        hash(alg, &format!("{base_ha1}:{nonce}:{cnonce}"))
    } else {
        base_ha1.to_owned()
    }
}

/// The request digest; `qop` is `(nc, cnonce, qop)` when a qop is used.
fn response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    qop: Option<(&str, &str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = hash(alg, &format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce, qop)) => hash(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
        None => hash(alg, &format!("{ha1}:{nonce}:{ha2}")),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Escapes `\` and `"` for a quoted-string.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn find_param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Checks the `Digest` scheme and parses the comma-separated
/// `name=value` list after it (RFC 7235 §2.1 auth-param). Values are
/// returned unquoted and unescaped; names as written.
fn parse_digest_params(value: &str) -> Result<Vec<(String, String)>, String> {
    let value = value.trim_start();
    let scheme_end = value
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(format!("scheme `{scheme}` is not Digest"));
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars
            .next_if(|&c| c == ',' || c.is_ascii_whitespace())
            .is_some()
        {}
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|&c| c != '=' && c != ',' && !c.is_ascii_whitespace()) {
            name.push(c);
        }
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        if chars.next() != Some('=') || name.is_empty() {
            return Err(format!("parameter `{name}` without `=value`"));
        }
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        let mut val = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quoted value of `{name}`")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => val.push(c),
                        None => return Err(format!("unterminated quoted value of `{name}`")),
                    },
                    Some(c) => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != ',' && !c.is_ascii_whitespace()) {
                val.push(c);
            }
        }
        // After a value only whitespace, then a comma or the end may follow.
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
        if !matches!(chars.peek(), None | Some(',')) {
            return Err(format!("junk after the value of `{name}`"));
        }
        params.push((name, val));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Extracts one parameter from a header value built by `authorization`.
    fn param(header: &str, name: &str) -> Option<String> {
        let params = parse_digest_params(header).unwrap();
        find_param(&params, name).map(str::to_owned)
    }

    const RFC2617_CHALLENGE: &str = "Digest\r\n realm=\"testrealm@host.com\",\r\n \
        qop=\"auth,auth-int\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n \
        opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

    const RFC7616_CHALLENGE: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
        algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc2617_section_3_5_vector() {
        let ch = Challenge::parse(RFC2617_CHALLENGE).unwrap();
        assert_eq!(ch.realm, "testrealm@host.com");
        assert_eq!(ch.qop, vec!["auth", "auth-int"]);
        assert_eq!(ch.algorithm, Algorithm::Md5);
        assert_eq!(
            ch.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert_eq!(
            param(&h, "response").unwrap(),
            "6629fae49393a05397450978507c4ef1"
        );
        assert_eq!(param(&h, "nc").unwrap(), "00000001");
        assert_eq!(param(&h, "qop").unwrap(), "auth");
        assert_eq!(param(&h, "cnonce").unwrap(), "0a4f113b");
        assert_eq!(
            param(&h, "opaque").unwrap(),
            "5ccc069c403ebaf9f0171e9517f40e41"
        );
        assert!(h.contains("qop=auth, nc=00000001"), "{h}");
        assert!(verify(&h, "Circle Of Life", "GET"));
    }

    #[test]
    fn rfc7616_section_3_9_1_vectors() {
        let ch = Challenge::parse(RFC7616_CHALLENGE).unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            RFC7616_CNONCE,
            1,
        );
        assert_eq!(
            param(&h, "response").unwrap(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(param(&h, "algorithm").unwrap(), "SHA-256");
        let md5 = Challenge {
            algorithm: Algorithm::Md5,
            ..ch
        };
        let h = authorization(
            &md5,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            RFC7616_CNONCE,
            1,
        );
        assert_eq!(
            param(&h, "response").unwrap(),
            "8ca523f5e9506fed4657c9700eebdbec"
        );
    }

    #[test]
    fn rfc7616_authorization_header_verifies() {
        let value = "Digest username=\"Mufasa\",\r\n realm=\"http-auth@example.org\",\r\n \
            uri=\"/dir/index.html\",\r\n algorithm=SHA-256,\r\n \
            nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n nc=00000001,\r\n \
            cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n qop=auth,\r\n \
            response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n \
            opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let creds = Credentials::parse(value).unwrap();
        assert_eq!(creds.username, "Mufasa");
        assert_eq!(creds.nonce_count(), Some(1));
        assert!(creds.verify("Circle of Life", "GET"));
        assert!(!creds.verify("Circle Of Life", "GET"));
        assert!(!creds.verify("Circle of Life", "POST"));
        let stored = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        assert!(creds.verify_ha1(&stored, "GET"));
        assert!(verify(value, "Circle of Life", "GET"));
    }

    #[test]
    fn legacy_mode_without_qop() {
        // Values computed independently (Python hashlib).
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        )
        .unwrap();
        assert!(ch.qop.is_empty());
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "ignored",
            1,
        );
        assert_eq!(
            param(&h, "response").unwrap(),
            "670fd8c2df070c60b045671b8b24ff02"
        );
        assert_eq!(param(&h, "qop"), None);
        assert_eq!(param(&h, "nc"), None);
        assert_eq!(param(&h, "cnonce"), None);
        assert!(verify(&h, "Circle Of Life", "GET"));
        // Only auth-int offered: legacy answer, no qop.
        let int_only = Challenge {
            qop: vec!["auth-int".into()],
            ..ch
        };
        let h2 = authorization(
            &int_only,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "x",
            1,
        );
        assert_eq!(
            param(&h2, "response").unwrap(),
            "670fd8c2df070c60b045671b8b24ff02"
        );
    }

    #[test]
    fn session_variants() {
        // Values computed independently (Python hashlib).
        let ch = Challenge::parse(&RFC2617_CHALLENGE.replace("qop=", "algorithm=MD5-sess, qop="))
            .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Md5Sess);
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
            1,
        );
        assert_eq!(
            param(&h, "response").unwrap(),
            "8e3825c57e897f5a0dec6c2d4e5059d0"
        );
        assert_eq!(param(&h, "algorithm").unwrap(), "MD5-sess");
        assert!(verify(&h, "Circle Of Life", "GET"));
        let stored = ha1(
            Algorithm::Md5Sess,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(Credentials::parse(&h).unwrap().verify_ha1(&stored, "GET"));

        let ch = Challenge::parse(&RFC7616_CHALLENGE.replace("SHA-256", "sha-256-SESS")).unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256Sess);
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            RFC7616_CNONCE,
            1,
        );
        assert_eq!(
            param(&h, "response").unwrap(),
            "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7"
        );
        assert!(verify(&h, "Circle of Life", "GET"));
    }

    #[test]
    fn sip_register_round_trip_with_nc() {
        let ch = Challenge::parse("digest REALM=example.com,NONCE=abc,QOP=auth").unwrap();
        let h = authorization(
            &ch,
            "alice",
            "secret",
            "REGISTER",
            "sip:example.com",
            "xyz",
            2,
        );
        assert_eq!(
            param(&h, "response").unwrap(),
            "52d2a3ac56f375ca40b3b4ac97195bab"
        );
        assert_eq!(param(&h, "nc").unwrap(), "00000002");
        let creds = Credentials::parse(&h).unwrap();
        assert_eq!(creds.nonce_count(), Some(2));
        assert!(creds.verify("secret", "REGISTER"));
        assert!(!creds.verify("secret", "INVITE"));
        assert!(!verify(&h.replace("alice", "bob"), "secret", "REGISTER"));
        assert!(!verify(
            &h.replace("nc=00000002", "nc=00000003"),
            "secret",
            "REGISTER"
        ));
    }

    #[test]
    fn challenge_parameter_syntax() {
        let ch = Challenge::parse(
            "Digest   REALM = \"a \\\"quoted\\\", realm\" ,nonce=tok123, Opaque=\"x,y\", \
             stale=TRUE, domain=\"sip:a sip:b\", algorithm=md5, foo=bar",
        )
        .unwrap();
        assert_eq!(ch.realm, "a \"quoted\", realm");
        assert_eq!(ch.nonce, "tok123");
        assert_eq!(ch.opaque.as_deref(), Some("x,y"));
        assert!(ch.stale);
        assert_eq!(ch.algorithm, Algorithm::Md5);
        // Escaping is applied on the way out.
        let h = authorization(&ch, "u\"x", "p", "INVITE", "sip:b", "c", 1);
        assert_eq!(param(&h, "realm").unwrap(), "a \"quoted\", realm");
        assert_eq!(param(&h, "username").unwrap(), "u\"x");
        assert!(verify(&h, "p", "INVITE"));
        assert!(
            !Challenge::parse("Digest realm=r, nonce=n, stale=false")
                .unwrap()
                .stale
        );
    }

    #[test]
    fn challenge_header_round_trips() {
        let ch = Challenge {
            realm: "sk\"ald".into(),
            nonce: "abc".into(),
            opaque: Some("o".into()),
            algorithm: Algorithm::Sha256,
            qop: vec!["auth".into()],
            stale: true,
        };
        assert_eq!(Challenge::parse(&ch.to_header_value()).unwrap(), ch);
        let plain = Challenge { opaque: None, stale: false, qop: vec![], ..ch };
        assert_eq!(Challenge::parse(&plain.to_header_value()).unwrap(), plain);
    }

    #[test]
    fn challenge_errors() {
        use AuthError::*;
        assert!(matches!(
            Challenge::parse("Basic realm=\"x\""),
            Err(BadChallenge(_))
        ));
        assert!(matches!(Challenge::parse(""), Err(BadChallenge(_))));
        assert!(matches!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(BadChallenge(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"r\""),
            Err(BadChallenge(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"r, nonce=n"),
            Err(BadChallenge(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm r, nonce=n"),
            Err(BadChallenge(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"r\"x, nonce=n"),
            Err(BadChallenge(_))
        ));
        assert_eq!(
            Challenge::parse("Digest realm=r, nonce=n, algorithm=SHA-512-256"),
            Err(Unsupported("SHA-512-256".into()))
        );
    }

    #[test]
    fn credentials_errors() {
        use AuthError::*;
        let ok = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"00\"";
        assert!(Credentials::parse(ok).is_ok());
        assert!(!verify(ok, "p", "INVITE"));
        for missing in ["username", "realm", "nonce", "uri", "response"] {
            let v = ok.replace(&format!("{missing}="), "other=");
            assert!(
                matches!(Credentials::parse(&v), Err(BadCredentials(_))),
                "{missing}"
            );
        }
        let qop_no_nc = format!("{ok}, qop=auth, cnonce=\"c\"");
        assert!(matches!(
            Credentials::parse(&qop_no_nc),
            Err(BadCredentials(_))
        ));
        let bad_nc = format!("{ok}, qop=auth, cnonce=\"c\", nc=1");
        assert!(matches!(
            Credentials::parse(&bad_nc),
            Err(BadCredentials(_))
        ));
        let int = format!("{ok}, qop=auth-int, cnonce=\"c\", nc=00000001");
        assert!(!Credentials::parse(&int).unwrap().verify("p", "INVITE"));
        assert!(matches!(
            Credentials::parse("Basic dXNlcjpwYXNz"),
            Err(BadCredentials(_))
        ));
        assert!(!verify("garbage", "p", "INVITE"));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = Challenge::parse(&s);
            let _ = Credentials::parse(&s);
            let _ = verify(&s, "p", "INVITE");
            let with_scheme = format!("Digest {s}");
            let _ = Challenge::parse(&with_scheme);
            let _ = verify(&with_scheme, "p", "INVITE");
        }

        #[test]
        fn quoted_values_round_trip(realm in "[ -~]{0,40}", user in "[ -~]{1,20}") {
            let ch = Challenge {
                realm: realm.clone(),
                nonce: "n".into(),
                opaque: None,
                algorithm: Algorithm::Sha256,
                qop: vec!["auth".into()],
                stale: false,
            };
            let h = authorization(&ch, &user, "pw", "INVITE", "sip:x", "c", 7);
            let creds = Credentials::parse(&h).unwrap();
            prop_assert_eq!(&creds.realm, &realm);
            prop_assert_eq!(&creds.username, &user);
            prop_assert!(creds.verify("pw", "INVITE"));
        }
    }
}
