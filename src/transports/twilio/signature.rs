//! `X-Twilio-Signature` validation (sans-IO, pure functions).
//!
//! Source: Twilio docs "Webhooks security". For a form-encoded POST, Twilio
//! takes the full URL it requested (scheme, host, port if any, path and query
//! string), appends every POST parameter's name immediately followed by its
//! value, parameters sorted by name (then by value, for repeated names), signs
//! that string with HMAC-SHA1 keyed by the account's Auth Token, and sends the
//! Base64 of the digest in `X-Twilio-Signature`.
//!
//! Ports: Twilio's own validators accept a request whether or not the signed
//! URL carried the scheme's default port (`:443` for https, `:80` for http),
//! because a proxy may add or drop it. [`is_valid`] therefore also tries the
//! URL with the default port added (when it has none) or removed (when it has
//! the default one); a non-default port is never changed.
//!
//! Invariants: comparison is constant time (`hmac`'s `verify_slice`); a
//! missing, empty or non-Base64 header is simply invalid; nothing panics on
//! any input.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// The signature Twilio sends for a POST of `params` to `url`, signed with
/// `auth_token`: Base64(HMAC-SHA1(token, url + sorted name+value pairs)).
pub fn expected_signature(url: &str, params: &[(String, String)], auth_token: &str) -> String {
    STANDARD.encode(mac_for(url, params, auth_token).finalize().into_bytes())
}

/// True when `header_value` (the `X-Twilio-Signature` header) is the
/// signature of `params` posted to `url` (or to `url` with its default port
/// added or removed, see the module doc) under `auth_token`. Constant time
/// in the digest comparison; bad Base64 is invalid.
pub fn is_valid(url: &str, params: &[(String, String)], auth_token: &str, header_value: &str) -> bool {
    let Ok(given) = STANDARD.decode(header_value.trim()) else {
        return false;
    };
    // Evaluate every variant (no early exit on the first one) so the time
    // taken does not tell which variant matched.
    url_variants(url)
        .iter()
        .fold(false, |ok, u| mac_for(u, params, auth_token).verify_slice(&given).is_ok() | ok)
}

/// The keyed MAC over the URL and the sorted parameters.
fn mac_for(url: &str, params: &[(String, String)], auth_token: &str) -> HmacSha1 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// `url` itself, plus the same URL with the scheme's default port added
/// (when it has no port) or removed (when it has the default port).
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return out,
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    // The port is after the last `:` that follows the host (an IPv6 literal
    // is bracketed, so its colons are before `]`).
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_start..];
    let port_colon = host_port
        .rfind(':')
        .filter(|&i| host_port.rfind(']').is_none_or(|b| b < i));
    let toggled = match port_colon {
        None => format!("{scheme}://{authority}:{default_port}{tail}"),
        Some(i) if &host_port[i + 1..] == default_port => {
            format!("{scheme}://{}{}{tail}", &authority[..host_start], &host_port[..i])
        }
        Some(_) => return out,
    };
    out.push(toggled);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const TOKEN: &str = "12345";
    const DOC_SIGNATURE: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn doc_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn documented_example_validates() {
        assert_eq!(expected_signature(URL, &doc_params(), TOKEN), DOC_SIGNATURE);
        assert!(is_valid(URL, &doc_params(), TOKEN, DOC_SIGNATURE));
        // Order of the parameters as received does not matter.
        let mut reversed = doc_params();
        reversed.reverse();
        assert!(is_valid(URL, &reversed, TOKEN, DOC_SIGNATURE));
    }

    #[test]
    fn changed_param_url_or_token_fails() {
        let mut p = doc_params();
        p[2].1 = "1235".into();
        assert!(!is_valid(URL, &p, TOKEN, DOC_SIGNATURE));
        let mut extra = doc_params();
        extra.push(("Extra".into(), String::new()));
        assert!(!is_valid(URL, &extra, TOKEN, DOC_SIGNATURE));
        assert!(!is_valid("https://mycompany.com/myapp.php?foo=1&bar=3", &doc_params(), TOKEN, DOC_SIGNATURE));
        assert!(!is_valid("http://mycompany.com/myapp.php?foo=1&bar=2", &doc_params(), TOKEN, DOC_SIGNATURE));
        assert!(!is_valid(URL, &doc_params(), "12346", DOC_SIGNATURE));
    }

    #[test]
    fn missing_or_garbage_header_fails() {
        for h in ["", "   ", "not base64 !!", "0/KCTR6DLpKmkAf8muzZqo1nDgQ", "AAAA"] {
            assert!(!is_valid(URL, &doc_params(), TOKEN, h), "{h:?}");
        }
    }

    #[test]
    fn default_port_added_or_removed() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        // Signed without the port, received with it (and vice versa).
        assert!(is_valid(with_port, &doc_params(), TOKEN, DOC_SIGNATURE));
        let sig = expected_signature(with_port, &doc_params(), TOKEN);
        assert_ne!(sig, DOC_SIGNATURE);
        assert!(is_valid(URL, &doc_params(), TOKEN, &sig));
        // A different port is a different URL.
        assert!(!is_valid("https://mycompany.com:8443/myapp.php?foo=1&bar=2", &doc_params(), TOKEN, DOC_SIGNATURE));
        // http's default is 80, not 443.
        let http = "http://h.example/x";
        let sig80 = expected_signature("http://h.example:80/x", &[], TOKEN);
        assert!(is_valid(http, &[], TOKEN, &sig80));
        let sig443 = expected_signature("http://h.example:443/x", &[], TOKEN);
        assert!(!is_valid(http, &[], TOKEN, &sig443));
    }

    #[test]
    fn url_variants_cover_ipv6_and_userinfo() {
        assert_eq!(
            url_variants("https://[::1]/a"),
            ["https://[::1]/a", "https://[::1]:443/a"]
        );
        assert_eq!(
            url_variants("https://u:p@h.example:443?q"),
            ["https://u:p@h.example:443?q", "https://u:p@h.example?q"]
        );
        assert_eq!(url_variants("no scheme"), ["no scheme"]);
    }
}
