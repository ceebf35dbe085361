//! Twilio REST API client: the few resources `skald twilio …` and
//! `skald call --via twilio` need (IncomingPhoneNumber, Call).
//!
//! Source: Twilio REST API reference, API version `2010-04-01`:
//! - "IncomingPhoneNumber resource": list
//!   `GET /2010-04-01/Accounts/{AccountSid}/IncomingPhoneNumbers.json`
//!   (filter `PhoneNumber`, page size `PageSize`), update
//!   `POST …/IncomingPhoneNumbers/{Sid}.json` (`VoiceUrl`, `VoiceMethod`,
//!   `StatusCallback`, `StatusCallbackMethod`).
//! - "Call resource": create `POST …/Calls.json` (`To`, `From`, `Twiml`,
//!   `StatusCallback`, `StatusCallbackMethod`, `StatusCallbackEvent`
//!   repeated once per event), list `GET …/Calls.json` (filters `To`,
//!   `From`, `PageSize`).
//! - "Errors": a non-2xx answer carries `{code, message, more_info, status}`.
//! - "Authentication": HTTP Basic with `AccountSid:AuthToken`, or
//!   `ApiKeySid:ApiKeySecret` (the account SID stays in the path).
//!
//! Request bodies are `application/x-www-form-urlencoded` with Twilio's
//! PascalCase names; answers are JSON with snake_case names. Every request
//! has a 15 s timeout. Secrets never appear in `Debug` output or errors.

use crate::config::TwilioConfig;
use serde::Deserialize;
use std::time::Duration;

/// Twilio's REST API version path segment.
const API_VERSION: &str = "2010-04-01";

/// Whole-request timeout (connect, send, read the answer).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors of the REST client. `Transport` and `Decode` carry their cause
/// as the error source (print with `{:#}` through anyhow for the chain).
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// No account SID in the config or the environment.
    #[error("no Twilio account SID: set TWILIO_ACCOUNT_SID (or twilio.account_sid in the config)")]
    MissingAccountSid,
    /// Neither an Auth Token nor a complete API key pair.
    #[error(
        "no Twilio credentials: set TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and TWILIO_API_SECRET \
         (or twilio.auth_token / twilio.api_key_sid + twilio.api_key_secret in the config)"
    )]
    MissingCredentials,
    /// A SID (account, number) that is not the letters and digits Twilio
    /// issues; refused before it reaches a URL path.
    #[error("`{0}` is not a Twilio SID")]
    BadSid(String),
    /// A phone number that is not E.164 (`+` and 8 to 15 digits).
    #[error("`{0}` is not an E.164 phone number (e.g. +15551234567)")]
    BadNumber(String),
    /// The account has no incoming phone number equal to this one.
    #[error("the Twilio account has no phone number {0}")]
    NumberNotFound(String),
    /// Twilio answered with a non-2xx status and (usually) an error document.
    #[error("Twilio API error{}: {message} (HTTP {status}){}",
        code.map(|c| format!(" {c}")).unwrap_or_default(),
        more_info.as_ref().map(|m| format!("; see {m}")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// Twilio error code (e.g. 20404 not found, 20003 authentication).
        code: Option<u32>,
        /// Twilio's message, or the start of a non-JSON body.
        message: String,
        /// Link to Twilio's page for the code.
        more_info: Option<String>,
    },
    /// No complete answer within the request timeout (this long).
    #[error("Twilio API did not answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed (DNS, TLS, reset).
    #[error("cannot reach the Twilio API")]
    Transport(#[source] reqwest::Error),
    /// A 2xx answer whose JSON is not shaped as documented.
    #[error("unexpected answer from the Twilio API")]
    Decode(#[source] serde_json::Error),
}

/// How requests authenticate (HTTP Basic).
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `AccountSid:AuthToken`.
    AuthToken(String),
    /// `ApiKeySid:ApiKeySecret`.
    ApiKey {
        /// API key SID (`SK…`).
        sid: String,
        /// API key secret.
        secret: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::AuthToken(_) => f.write_str("AuthToken(<hidden>)"),
            Auth::ApiKey { sid, .. } => write!(f, "ApiKey {{ sid: {sid:?}, secret: <hidden> }}"),
        }
    }
}

/// An incoming phone number (the fields skald uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncomingPhoneNumber {
    /// `PN…`.
    pub sid: String,
    /// E.164 number.
    pub phone_number: String,
    /// Name shown in the console.
    #[serde(default)]
    pub friendly_name: Option<String>,
    /// Webhook Twilio requests when a call arrives.
    #[serde(default)]
    pub voice_url: Option<String>,
    /// `GET` or `POST`.
    #[serde(default)]
    pub voice_method: Option<String>,
    /// Call status callback URL.
    #[serde(default)]
    pub status_callback: Option<String>,
    /// `GET` or `POST`.
    #[serde(default)]
    pub status_callback_method: Option<String>,
}

/// A call (the fields skald uses); what creating a call and listing calls
/// both return (Twilio has one Call resource).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    /// `CA…`.
    pub sid: String,
    /// Caller (E.164, a client or SIP address).
    #[serde(default)]
    pub from: Option<String>,
    /// Callee.
    #[serde(default)]
    pub to: Option<String>,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`,
    /// `no-answer`, `canceled`.
    #[serde(default)]
    pub status: Option<String>,
    /// `inbound`, `outbound-api`, `outbound-dial`.
    #[serde(default)]
    pub direction: Option<String>,
    /// RFC 2822 date, e.g. `Tue, 31 Aug 2010 20:36:29 +0000`; null until
    /// the call starts.
    #[serde(default)]
    pub start_time: Option<String>,
    /// RFC 2822 date the resource was created.
    #[serde(default)]
    pub date_created: Option<String>,
    /// Seconds, as a string; null until the call ends.
    #[serde(default)]
    pub duration: Option<String>,
}

/// Twilio's error document.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    /// Twilio error code.
    code: Option<u32>,
    /// Human-readable message.
    message: Option<String>,
    /// Documentation link.
    more_info: Option<String>,
}

/// One page of the IncomingPhoneNumbers list.
#[derive(Deserialize)]
struct NumberPage {
    /// The numbers on this page.
    incoming_phone_numbers: Vec<IncomingPhoneNumber>,
}

/// One page of the Calls list.
#[derive(Deserialize)]
struct CallPage {
    /// The calls on this page, newest first.
    calls: Vec<CallResource>,
}

/// A Twilio REST client for one account.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    /// Shared connection pool.
    http: reqwest::Client,
    /// Whole-request timeout; [`REQUEST_TIMEOUT`] unless set by
    /// [`TwilioClient::with_timeout`].
    timeout: Duration,
    /// `https://api.twilio.com` or a test server, without a trailing `/`.
    base_url: String,
    /// `AC…`: the account in every path.
    account_sid: String,
    /// Basic-auth credentials.
    auth: Auth,
}

impl TwilioClient {
    /// A client for `base_url`. Errors: [`RestError::BadSid`] when the
    /// account SID is not alphanumeric; [`RestError::Transport`] when the
    /// HTTP client cannot be built (no TLS roots).
    pub fn new(base_url: &str, account_sid: &str, auth: Auth) -> Result<TwilioClient, RestError> {
        check_sid(account_sid)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("skald/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(RestError::Transport)?;
        Ok(TwilioClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            account_sid: account_sid.to_string(),
            auth,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client with another whole-request timeout.
    pub fn with_timeout(self, timeout: Duration) -> TwilioClient {
        TwilioClient { timeout, ..self }
    }

    /// A client from the `twilio:` config section (environment already
    /// resolved). An API key pair wins over the Auth Token when both are
    /// set. Errors: [`RestError::MissingAccountSid`],
    /// [`RestError::MissingCredentials`], and those of [`TwilioClient::new`].
    pub fn from_config(cfg: &TwilioConfig) -> Result<TwilioClient, RestError> {
        let set = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_string);
        let account_sid = set(&cfg.account_sid).ok_or(RestError::MissingAccountSid)?;
        let auth = match (set(&cfg.api_key_sid), set(&cfg.api_key_secret), set(&cfg.auth_token)) {
            (Some(sid), Some(secret), _) => Auth::ApiKey { sid, secret },
            (_, _, Some(token)) => Auth::AuthToken(token),
            _ => return Err(RestError::MissingCredentials),
        };
        Self::new(&cfg.api_base_url, &account_sid, auth)
    }

    /// The account SID requests go to.
    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// The credentials in use (secrets hidden in `Debug`).
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The account's incoming numbers (first page, up to `limit`).
    pub async fn list_numbers(&self, limit: u32) -> Result<Vec<IncomingPhoneNumber>, RestError> {
        let page: NumberPage =
            self.get("IncomingPhoneNumbers.json", &[("PageSize", &limit.to_string())]).await?;
        Ok(page.incoming_phone_numbers)
    }

    /// The incoming number equal to `phone` (E.164). Twilio's `PhoneNumber`
    /// filter also matches partial numbers, so only an exact match counts.
    /// Errors: [`RestError::BadNumber`], [`RestError::NumberNotFound`], and
    /// request errors.
    pub async fn find_number(&self, phone: &str) -> Result<IncomingPhoneNumber, RestError> {
        check_e164(phone)?;
        let page: NumberPage = self.get("IncomingPhoneNumbers.json", &[("PhoneNumber", phone)]).await?;
        page.incoming_phone_numbers
            .into_iter()
            .find(|n| n.phone_number == phone)
            .ok_or_else(|| RestError::NumberNotFound(phone.to_string()))
    }

    /// Points a number's voice webhook at `voice_url` and its call status
    /// callback at `status_callback`, both requested with `POST`. Returns
    /// the number as Twilio now has it.
    pub async fn update_voice_webhook(
        &self,
        number_sid: &str,
        voice_url: &str,
        status_callback: &str,
    ) -> Result<IncomingPhoneNumber, RestError> {
        check_sid(number_sid)?;
        let form = [
            ("VoiceUrl", voice_url),
            ("VoiceMethod", "POST"),
            ("StatusCallback", status_callback),
            ("StatusCallbackMethod", "POST"),
        ];
        self.post(&format!("IncomingPhoneNumbers/{number_sid}.json"), &form).await
    }

    /// Recent calls, newest first, at most `limit`. With `phone`, the calls
    /// to it and the calls from it: two list requests (`To=`, `From=`, each
    /// `PageSize=limit`) merged by start time (a call appears once);
    /// without, the account's latest calls.
    pub async fn recent_calls(&self, phone: Option<&str>, limit: u32) -> Result<Vec<CallResource>, RestError> {
        let size = limit.to_string();
        let Some(phone) = phone else {
            let page: CallPage = self.get("Calls.json", &[("PageSize", &size)]).await?;
            return Ok(page.calls);
        };
        check_e164(phone)?;
        let to: CallPage = self.get("Calls.json", &[("To", phone), ("PageSize", &size)]).await?;
        let from: CallPage = self.get("Calls.json", &[("From", phone), ("PageSize", &size)]).await?;
        Ok(merge_calls(to.calls, from.calls, limit as usize))
    }

    /// Places an outbound call from `from` (a number of this account or a
    /// verified caller id) to `to` that runs `twiml` when answered, with
    /// status callbacks (`POST`) for `initiated`, `ringing`, `answered` and
    /// `completed`. Returns the queued call.
    pub async fn create_call(
        &self,
        to: &str,
        from: &str,
        twiml: &str,
        status_callback: &str,
    ) -> Result<CallResource, RestError> {
        let form = [
            ("To", to),
            ("From", from),
            ("Twiml", twiml),
            ("StatusCallback", status_callback),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ];
        self.post("Calls.json", &form).await
    }

    /// Replaces the instructions of live call `call_sid` with `twiml`
    /// ("Update a Call resource": `POST /Calls/{Sid}.json` with `Twiml`).
    /// A call connected to a `<Stream>` leaves it (the stream gets `stop`)
    /// and runs `twiml`, e.g. a `<Dial>` that transfers it. Errors: the
    /// call is unknown or over (`Api` 404 / 21220), transport, timeout.
    pub async fn update_call_twiml(&self, call_sid: &str, twiml: &str) -> Result<CallResource, RestError> {
        self.post(&format!("Calls/{call_sid}.json"), &[("Twiml", twiml)]).await
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}/{rest}`.
    fn url(&self, rest: &str) -> String {
        format!("{}/{API_VERSION}/Accounts/{}/{rest}", self.base_url, self.account_sid)
    }

    /// Adds Basic auth.
    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::AuthToken(token) => req.basic_auth(&self.account_sid, Some(token)),
            Auth::ApiKey { sid, secret } => req.basic_auth(sid, Some(secret)),
        }
    }

    /// GET with query parameters.
    async fn get<T: serde::de::DeserializeOwned>(&self, rest: &str, query: &[(&str, &str)]) -> Result<T, RestError> {
        self.send(self.authed(self.http.get(self.url(rest)).query(query))).await
    }

    /// POST with a form body (keys may repeat).
    async fn post<T: serde::de::DeserializeOwned>(&self, rest: &str, form: &[(&str, &str)]) -> Result<T, RestError> {
        self.send(self.authed(self.http.post(self.url(rest)).form(form))).await
    }

    /// Sends, then decodes a 2xx JSON answer or turns the rest into errors.
    async fn send<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, RestError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() { RestError::Timeout(self.timeout) } else { RestError::Transport(e) }
        };
        let resp = req.timeout(self.timeout).send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(RestError::Decode)
    }
}

/// The error for a non-2xx answer: Twilio's error document when the body is
/// one, else the start of the body as the message.
pub fn api_error(status: u16, body: &[u8]) -> RestError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if e.code.is_some() || e.message.is_some() => RestError::Api {
            status,
            code: e.code,
            message: e.message.unwrap_or_default(),
            more_info: e.more_info,
        },
        _ => {
            let text = String::from_utf8_lossy(body);
            let mut message: String = text.trim().chars().take(200).collect();
            if message.is_empty() {
                message = "no error details".into();
            }
            RestError::Api { status, code: None, message, more_info: None }
        }
    }
}

/// Refuses anything but the ASCII letters and digits of a Twilio SID.
fn check_sid(sid: &str) -> Result<(), RestError> {
    if sid.len() >= 2 && sid.len() <= 64 && sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(RestError::BadSid(sid.to_string()))
    }
}

/// `+` followed by 8 to 15 digits.
pub fn check_e164(phone: &str) -> Result<(), RestError> {
    match phone.strip_prefix('+') {
        Some(d) if (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(RestError::BadNumber(phone.to_string())),
    }
}

/// Both lists in one, newest first (start time, else creation time; calls
/// not started yet first), each call once, at most `limit`.
fn merge_calls(a: Vec<CallResource>, b: Vec<CallResource>, limit: usize) -> Vec<CallResource> {
    let mut all: Vec<CallResource> = Vec::with_capacity(a.len() + b.len());
    for c in a.into_iter().chain(b) {
        if !all.iter().any(|x| x.sid == c.sid) {
            all.push(c);
        }
    }
    let key = |c: &CallResource| {
        let start = c.start_time.as_deref().and_then(rfc2822_key);
        let created = c.date_created.as_deref().and_then(rfc2822_key);
        (start.is_none(), start.or(created))
    };
    // Stable: equal keys keep Twilio's order.
    all.sort_by_key(|c| std::cmp::Reverse(key(c)));
    all.truncate(limit);
    all
}

/// A sortable key for Twilio's dates (`Tue, 31 Aug 2010 20:36:29 +0000`;
/// Twilio always writes UTC): (year, month, day, hh, mm, ss).
fn rfc2822_key(s: &str) -> Option<(u32, u32, u32, u32, u32, u32)> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let s = s.split_once(',').map_or(s, |(_, rest)| rest);
    let mut it = s.split_whitespace();
    let day = it.next()?.parse().ok()?;
    let mon = it.next()?.get(..3)?;
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let year = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next().flatten().unwrap_or(0));
    Some((year, month, day, h, m, sec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_error_document_becomes_api_error() {
        // The shape of Twilio's documented 404 answer.
        let body = br#"{"code": 20404, "message": "The requested resource /2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/IncomingPhoneNumbers/PN0.json was not found", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404}"#;
        let RestError::Api { status, code, message, more_info } = api_error(404, body) else {
            panic!("not an Api error");
        };
        assert_eq!((status, code), (404, Some(20404)));
        assert!(message.starts_with("The requested resource"), "{message}");
        assert_eq!(more_info.as_deref(), Some("https://www.twilio.com/docs/errors/20404"));
        let e = api_error(
            401,
            br#"{"code":20003,"detail":"Your AccountSid or AuthToken was incorrect.","message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#,
        );
        assert_eq!(
            e.to_string(),
            "Twilio API error 20003: Authenticate (HTTP 401); see https://www.twilio.com/docs/errors/20003"
        );
    }

    #[test]
    fn non_json_error_body_keeps_status_and_text() {
        let RestError::Api { status, code, message, .. } = api_error(502, b"<html>Bad Gateway</html>\n") else {
            panic!("not an Api error");
        };
        assert_eq!((status, code, message.as_str()), (502, None, "<html>Bad Gateway</html>"));
        let RestError::Api { message, .. } = api_error(500, b"") else { panic!() };
        assert_eq!(message, "no error details");
        // JSON that is not an error document is not mistaken for one.
        let RestError::Api { code, message, .. } = api_error(500, b"{\"x\":1}") else { panic!() };
        assert_eq!((code, message.as_str()), (None, "{\"x\":1}"));
    }

    fn cfg(sid: Option<&str>, token: Option<&str>, key: Option<(&str, &str)>) -> TwilioConfig {
        TwilioConfig {
            account_sid: sid.map(Into::into),
            auth_token: token.map(Into::into),
            api_key_sid: key.map(|k| k.0.into()),
            api_key_secret: key.map(|k| k.1.into()),
            ..TwilioConfig::default()
        }
    }

    #[test]
    fn from_config_names_what_is_missing_and_prefers_the_api_key() {
        let e = TwilioClient::from_config(&cfg(None, Some("t"), None)).unwrap_err();
        assert!(e.to_string().contains("TWILIO_ACCOUNT_SID"), "{e}");
        let e = TwilioClient::from_config(&cfg(Some("AC1"), None, None)).unwrap_err();
        assert!(e.to_string().contains("TWILIO_AUTH_TOKEN") && e.to_string().contains("TWILIO_API_KEY"), "{e}");
        let e = TwilioClient::from_config(&cfg(Some("AC1"), Some(""), Some(("SK1", "")))).unwrap_err();
        assert!(matches!(e, RestError::MissingCredentials), "{e}");
        let e = TwilioClient::from_config(&cfg(Some("AC1/../x"), Some("t"), None)).unwrap_err();
        assert!(matches!(e, RestError::BadSid(_)), "{e}");

        let c = TwilioClient::from_config(&cfg(Some("AC1"), Some("tok"), None)).unwrap();
        assert_eq!(c.auth(), &Auth::AuthToken("tok".into()));
        let c = TwilioClient::from_config(&cfg(Some("AC1"), Some("tok"), Some(("SK1", "sec")))).unwrap();
        assert_eq!(c.auth(), &Auth::ApiKey { sid: "SK1".into(), secret: "sec".into() });
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("sec\"") && !dbg.contains("tok"), "secrets in Debug: {dbg}");
        assert_eq!(c.url("Calls.json"), "https://api.twilio.com/2010-04-01/Accounts/AC1/Calls.json");
    }

    #[test]
    fn e164_check() {
        assert!(check_e164("+15005550006").is_ok());
        for bad in ["15005550006", "+1500", "+1 500 555 0006", "+1234567890123456", "+"] {
            assert!(matches!(check_e164(bad), Err(RestError::BadNumber(_))), "{bad}");
        }
    }

    fn call(sid: &str, start: Option<&str>) -> CallResource {
        CallResource {
            sid: sid.into(),
            from: None,
            to: None,
            status: None,
            direction: None,
            start_time: start.map(Into::into),
            date_created: None,
            duration: None,
        }
    }

    #[test]
    fn merged_calls_are_newest_first_once_each() {
        let to = vec![
            call("CA3", Some("Wed, 01 Sep 2010 08:00:00 +0000")),
            call("CA1", Some("Tue, 31 Aug 2010 20:36:29 +0000")),
        ];
        let from = vec![
            call("CA4", None),
            call("CA3", Some("Wed, 01 Sep 2010 08:00:00 +0000")),
            call("CA2", Some("Tue, 31 Aug 2010 21:00:00 +0000")),
        ];
        let sids: Vec<_> = merge_calls(to.clone(), from.clone(), 10).into_iter().map(|c| c.sid).collect();
        assert_eq!(sids, ["CA4", "CA3", "CA2", "CA1"]);
        assert_eq!(merge_calls(to, from, 2).len(), 2);
        assert_eq!(rfc2822_key("Tue, 31 Aug 2010 20:36:29 +0000"), Some((2010, 8, 31, 20, 36, 29)));
        assert_eq!(rfc2822_key("garbage"), None);
    }
}
