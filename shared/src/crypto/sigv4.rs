//! AWS Signature Version 4 for an HTTP request sent in headers (`Authorization: AWS4-HMAC-SHA256 ...`),
//! as Bedrock and every other non-S3 AWS service expect.
//!
//! The steps follow AWS's "Create a signed AWS API request" (IAM user guide,
//! `reference_sigv-create-signed-request`):
//!
//! 1. canonical request: `METHOD \n canonical URI \n canonical query \n canonical headers \n
//!    signed headers \n hex(sha256(payload))`;
//! 2. string to sign: `AWS4-HMAC-SHA256 \n YYYYMMDDTHHMMSSZ \n date/region/service/aws4_request \n
//!    hex(sha256(canonical request))`;
//! 3. signing key: `HMAC("AWS4" + secret, date)`, then the region, the service and `aws4_request`;
//!    signature `hex(HMAC(key, string to sign))`.
//!
//! **The canonical URI** (the part that differs between services): the path is normalised (RFC 3986
//! dot segments removed, empty segments dropped) and each segment URI-encoded (everything but
//! `A-Z a-z 0-9 - _ . ~`, as `%XX` upper case). [`Request::path`] is the path *as sent on the wire*,
//! already encoded once, so for non-S3 services the original text ends up encoded twice: a Bedrock
//! model id `anthropic.claude-3-5-sonnet-20240620-v1:0` is sent as `...-v1%3A0` and signed as
//! `...-v1%253A0`, which is what AWS computes (S3 alone signs the path encoded once, unnormalised; not
//! supported here). Build the wire path with [`uri_encode`].
//!
//! **The query** is split on `&` and `=`, each name and value percent-decoded then encoded again,
//! and the pairs sorted by encoded name, then value. `+` is taken literally (`%2B`), not as a space.
//!
//! **Headers**: names lower-cased, values trimmed with inner runs of whitespace (line folds included)
//! made one space, repeated names joined with `,` in the order given, sorted by name. `host` and
//! `x-amz-date` are always signed, `x-amz-security-token` when the credentials carry a session token,
//! `x-amz-content-sha256` when [`Signer::content_sha256_header`] is set.
//!
//! No clock is read: the caller passes the signing instant as a [`DateTime`].
//! Checked against ten cases of the AWS SigV4 test suite and the documented IAM `ListUsers` example
//! (tests below).

use super::encoding::hex;
use super::sha256::{hmac_sha256, sha256};
use crate::time::DateTime;
use std::fmt;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Long-term or temporary AWS credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// The session token of temporary (STS) credentials, sent and signed as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
}

// Never print the secret or the token.
impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// The body, or its SHA-256 when the caller already has it (or streams the body later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    Bytes(&'a [u8]),
    /// Lowercase hex SHA-256 of the body, 64 characters.
    Sha256Hex(&'a str),
}

/// The request to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `POST`, ... as sent.
    pub method: &'a str,
    /// The `host` header (the `:authority`), e.g. `bedrock-runtime.us-east-1.amazonaws.com`.
    pub host: &'a str,
    /// The path as sent on the wire (already URI-encoded once), without the query.
    pub path: &'a str,
    /// The query string as sent, without `?`; empty when there is none.
    pub query: &'a str,
    /// Further headers to sign (and send unchanged), e.g. `content-type`. Not `host` nor the headers
    /// the signer adds. Sign only headers no proxy on the way will change.
    pub headers: &'a [(&'a str, &'a str)],
    pub payload: Payload<'a>,
}

/// Signs requests for one service in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signer<'a> {
    pub credentials: Credentials<'a>,
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// e.g. `bedrock` (the signing name, not the host's `bedrock-runtime`).
    pub service: &'a str,
    /// Remove dot segments and empty segments from the path before encoding (every service but S3).
    pub normalize_path: bool,
    /// Add and sign `x-amz-content-sha256` with the payload hash. Required by S3 only, accepted by
    /// every service; on by default so the upstream can check the body it received.
    pub content_sha256_header: bool,
}

/// A signature and everything that went into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Headers to add to the request: `authorization`, `x-amz-date`, then `x-amz-content-sha256` and
    /// `x-amz-security-token` when they apply.
    pub headers: Vec<(&'static str, String)>,
    pub canonical_request: String,
    pub string_to_sign: String,
    /// Lowercase hex.
    pub signature: String,
}

impl Signed {
    /// The value of the `authorization` header.
    pub fn authorization(&self) -> &str {
        self.headers
            .iter()
            .find(|(name, _)| *name == "authorization")
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Why a request could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigV4Error {
    /// A header name that is not an HTTP token (empty, or with a space, `:` or a control character).
    InvalidHeaderName(String),
    /// A header the signer sets itself (`host`, `authorization`, `x-amz-date`, ...).
    ReservedHeader(String),
    /// A header value with a control character other than tab or a line fold.
    InvalidHeaderValue(String),
    /// [`Payload::Sha256Hex`] that is not 64 hex digits.
    InvalidPayloadHash,
    /// A `%` in the query not followed by two hex digits.
    InvalidQueryEscape,
    /// A region or service that is empty or contains `/` (they become part of the scope).
    InvalidScope,
}

impl fmt::Display for SigV4Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigV4Error::InvalidHeaderName(n) => write!(f, "SigV4: invalid header name {n:?}"),
            SigV4Error::ReservedHeader(n) => {
                write!(f, "SigV4: header {n:?} is set by the signer, not the caller")
            }
            SigV4Error::InvalidHeaderValue(n) => {
                write!(f, "SigV4: header {n:?} has a control character in its value")
            }
            SigV4Error::InvalidPayloadHash => {
                write!(f, "SigV4: the payload hash is not 64 hex digits")
            }
            SigV4Error::InvalidQueryEscape => write!(f, "SigV4: bad percent escape in the query"),
            SigV4Error::InvalidScope => write!(f, "SigV4: region and service must be non-empty, without '/'"),
        }
    }
}

impl std::error::Error for SigV4Error {}

/// Headers the signer computes; a caller passing one would sign it twice or sign a stale value.
const RESERVED: [&str; 5] = [
    "host",
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

impl<'a> Signer<'a> {
    /// A signer with path normalisation and `x-amz-content-sha256` on.
    pub fn new(credentials: Credentials<'a>, region: &'a str, service: &'a str) -> Self {
        Signer {
            credentials,
            region,
            service,
            normalize_path: true,
            content_sha256_header: true,
        }
    }

    /// Signs `request` as of `time`.
    pub fn sign(&self, request: &Request<'_>, time: DateTime) -> Result<Signed, SigV4Error> {
        let valid_scope = |s: &str| !s.is_empty() && !s.contains('/');
        if !valid_scope(self.region) || !valid_scope(self.service) {
            return Err(SigV4Error::InvalidScope);
        }
        let payload_hash = match request.payload {
            Payload::Bytes(body) => hex(&sha256(body)),
            Payload::Sha256Hex(h) => {
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(SigV4Error::InvalidPayloadHash);
                }
                h.to_ascii_lowercase()
            }
        };
        let amz_date = time.basic();
        let date = time.basic_date();

        let mut headers: Vec<(String, String)> = Vec::with_capacity(request.headers.len() + 4);
        for (name, value) in request.headers {
            let lower = name.to_ascii_lowercase();
            if lower.is_empty() || !lower.bytes().all(is_token_byte) {
                return Err(SigV4Error::InvalidHeaderName((*name).to_string()));
            }
            if RESERVED.contains(&lower.as_str()) {
                return Err(SigV4Error::ReservedHeader(lower));
            }
            if value
                .bytes()
                .any(|b| b.is_ascii_control() && !matches!(b, b'\t' | b'\r' | b'\n'))
            {
                return Err(SigV4Error::InvalidHeaderValue(lower));
            }
            headers.push((lower, canonical_value(value)));
        }
        headers.push(("host".into(), canonical_value(request.host)));
        headers.push(("x-amz-date".into(), amz_date.clone()));
        if self.content_sha256_header {
            headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
        }
        if let Some(token) = self.credentials.session_token {
            headers.push(("x-amz-security-token".into(), canonical_value(token)));
        }
        // Stable: values of a repeated name keep the order they were given in.
        headers.sort_by(|a, b| a.0.cmp(&b.0));

        let mut canonical_headers = String::new();
        let mut signed_headers = String::new();
        let mut i = 0;
        while let Some((name, first)) = headers.get(i) {
            let mut value = first.clone();
            i += 1;
            while let Some((_, more)) = headers.get(i).filter(|(n, _)| n == name) {
                value.push(',');
                value.push_str(more);
                i += 1;
            }
            canonical_headers.push_str(name);
            canonical_headers.push(':');
            canonical_headers.push_str(&value);
            canonical_headers.push('\n');
            if !signed_headers.is_empty() {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
        }

        let canonical_request = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            request.method,
            canonical_uri(request.path, self.normalize_path),
            canonical_query(request.query)?,
            canonical_headers,
            signed_headers,
            payload_hash
        );
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
            hex(&sha256(canonical_request.as_bytes()))
        );
        let key = signing_key(
            self.credentials.secret_access_key,
            &date,
            self.region,
            self.service,
        );
        let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));

        let mut out = vec![
            (
                "authorization",
                format!(
                    "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                    self.credentials.access_key_id
                ),
            ),
            ("x-amz-date", amz_date),
        ];
        if self.content_sha256_header {
            out.push(("x-amz-content-sha256", payload_hash));
        }
        if let Some(token) = self.credentials.session_token {
            out.push(("x-amz-security-token", token.to_string()));
        }
        Ok(Signed {
            headers: out,
            canonical_request,
            string_to_sign,
            signature,
        })
    }
}

/// The signing key for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// RFC 7230 `tchar`: what an HTTP header name may contain.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Trimmed, with every run of whitespace (spaces, tabs, line folds) made one space.
fn canonical_value(v: &str) -> String {
    v.split_ascii_whitespace().collect::<Vec<_>>().join(" ")
}

/// URI-encodes `s` the SigV4 way: every byte but `A-Z a-z 0-9 - _ . ~` (and `/` unless
/// `encode_slash`) becomes `%XX`, upper case. Use it to build a wire path from raw text, e.g. a model id.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    encode_bytes(s.as_bytes(), encode_slash)
}

fn encode_bytes(bytes: &[u8], encode_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (b == b'/' && !encode_slash) {
            out.push(char::from(b));
        } else {
            out.push('%');
            for n in [b >> 4, b & 15] {
                // A nibble is always < 16, the table's length.
                #[allow(clippy::indexing_slicing)]
                out.push(char::from(HEX[usize::from(n)]));
            }
        }
    }
    out
}

/// The canonical URI of wire path `path`: normalised if asked, then each segment encoded again.
pub fn canonical_uri(path: &str, normalize: bool) -> String {
    if !normalize {
        let encoded = uri_encode(path, false);
        return if encoded.starts_with('/') {
            encoded
        } else {
            format!("/{encoded}")
        };
    }
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/') {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(path.len() + 8);
    for s in &segments {
        out.push('/');
        out.push_str(&uri_encode(s, true));
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query string of a query as sent (`a=1&b=2`, no `?`).
fn canonical_query(query: &str) -> Result<String, SigV4Error> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((
            encode_bytes(&percent_decode(name)?, true),
            encode_bytes(&percent_decode(value)?, true),
        ));
    }
    pairs.sort();
    let joined: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    Ok(joined.join("&"))
}

/// `%XX` escapes decoded to bytes; `+` is left as it is.
fn percent_decode(s: &str) -> Result<Vec<u8>, SigV4Error> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().and_then(|h| char::from(h).to_digit(16));
            let lo = bytes.next().and_then(|l| char::from(l).to_digit(16));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push((hi << 4 | lo) as u8),
                _ => return Err(SigV4Error::InvalidQueryEscape),
            }
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    // Expected values: the AWS "Signature Version 4 test suite" (AWS General Reference page of that
    // name; also shipped as `aws-signing-test-suite/v4` by the AWS SDKs and the Common Runtime,
    // Apache-2.0). Every case signs with the suite's example credentials, in us-east-1, for service
    // `service`, at 2015-08-30T12:36:00Z. The requests below are written out from the case
    // descriptions; only the results (`Authorization`, and for three cases the canonical request
    // and string to sign) are the suite's published values.
    const ACCESS_KEY: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const AMZ_DATE: &str = "20150830T123600Z";
    /// The suite's example STS session token (`post-sts-header-before`).
    const TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// One suite case: the request, and what the signer must produce for it.
    struct Case {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        headers: &'static [(&'static str, &'static str)],
        body: &'static [u8],
        session_token: Option<&'static str>,
        /// The suite's `sign_body`: add and sign `x-amz-content-sha256`.
        sign_body: bool,
        /// The `Signature=` of the expected `Authorization` header.
        signature: &'static str,
        /// `SignedHeaders=` of the expected `Authorization` header.
        signed_headers: &'static str,
        /// Expected canonical request and string to sign, for the cases that check every stage.
        stages: Option<(&'static str, &'static str)>,
    }

    const HOST: &str = "example.amazonaws.com";
    const PLAIN: &str = "host;x-amz-date";

    fn suite() -> [Case; 10] {
        let case = |name, method, path, query, signature| Case {
            name,
            method,
            path,
            query,
            headers: &[],
            body: b"",
            session_token: None,
            sign_body: false,
            signature,
            signed_headers: PLAIN,
            stages: None,
        };
        [
            Case {
                stages: Some((
                    "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
                     host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
                     bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
                )),
                ..case(
                    "get-vanilla",
                    "GET",
                    "/",
                    "",
                    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
                )
            },
            case(
                "get-vanilla-query-order-key-case",
                "GET",
                "/",
                "Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            Case {
                headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
                signed_headers: "host;my-header1;my-header2;x-amz-date",
                stages: Some((
                    "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n\
                     x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n\
                     e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
                     a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
                )),
                ..case(
                    "get-header-value-trim",
                    "GET",
                    "/",
                    "",
                    "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
                )
            },
            // U+1234 sent raw; the canonical URI is `/%E1%88%B4`.
            case(
                "get-utf8",
                "GET",
                "/\u{1234}",
                "",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            ),
            case(
                "get-space-normalized",
                "GET",
                "/example space/",
                "",
                "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
            ),
            case(
                "get-slashes-normalized",
                "GET",
                "//example//",
                "",
                "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
            ),
            case(
                "post-vanilla",
                "POST",
                "/",
                "",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            case(
                "post-vanilla-query",
                "POST",
                "/",
                "Param1=value1",
                "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
            ),
            Case {
                headers: &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Content-Length", "13"),
                ],
                body: b"Param1=value1",
                sign_body: true,
                signed_headers: "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
                stages: Some((
                    "POST\n/\n\ncontent-length:13\ncontent-type:application/x-www-form-urlencoded\n\
                     host:example.amazonaws.com\n\
                     x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n\
                     x-amz-date:20150830T123600Z\n\n\
                     content-length;content-type;host;x-amz-content-sha256;x-amz-date\n\
                     9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
                    "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
                     b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
                )),
                ..case(
                    "post-x-www-form-urlencoded",
                    "POST",
                    "/",
                    "",
                    "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
                )
            },
            Case {
                session_token: Some(TOKEN),
                signed_headers: "host;x-amz-date;x-amz-security-token",
                ..case(
                    "post-sts-header-before",
                    "POST",
                    "/",
                    "",
                    "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
                )
            },
        ]
    }

    #[test]
    fn aws_test_suite() {
        let time = DateTime::parse_basic(AMZ_DATE).unwrap();
        for case in suite() {
            let credentials = Credentials {
                access_key_id: ACCESS_KEY,
                secret_access_key: SECRET,
                session_token: case.session_token,
            };
            let mut signer = Signer::new(credentials, "us-east-1", "service");
            signer.content_sha256_header = case.sign_body;
            let request = Request {
                method: case.method,
                host: HOST,
                path: case.path,
                query: case.query,
                headers: case.headers,
                payload: Payload::Bytes(case.body),
            };
            let signed = signer.sign(&request, time).unwrap();
            let want = format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders={}, Signature={}",
                case.signed_headers, case.signature
            );
            assert_eq!(signed.authorization(), want, "{}", case.name);
            assert_eq!(signed.signature, case.signature, "{}", case.name);
            if let Some((canonical_request, string_to_sign)) = case.stages {
                assert_eq!(signed.canonical_request, canonical_request, "{}", case.name);
                assert_eq!(signed.string_to_sign, string_to_sign, "{}", case.name);
            }
            // The headers to add: the suite's signed request shows these and no others.
            let mut want_headers = vec![
                ("authorization", want.clone()),
                ("x-amz-date", AMZ_DATE.to_string()),
            ];
            if case.sign_body {
                want_headers.push(("x-amz-content-sha256", hex(&sha256(case.body))));
            }
            if let Some(token) = case.session_token {
                want_headers.push(("x-amz-security-token", token.to_string()));
            }
            assert_eq!(signed.headers, want_headers, "{}", case.name);
        }
    }

    /// The worked example of AWS's signing documentation (IAM `ListUsers` by GET, the General
    /// Reference's "Signature Version 4 signing process" tasks 1-3, now "Create a signed AWS API
    /// request"): the published hash of the canonical request, string to sign and signature.
    #[test]
    fn documented_list_users_example() {
        let credentials = Credentials {
            access_key_id: ACCESS_KEY,
            secret_access_key: SECRET,
            session_token: None,
        };
        let mut signer = Signer::new(credentials, "us-east-1", "iam");
        signer.content_sha256_header = false;
        let headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")];
        let request = Request {
            method: "GET",
            host: "iam.amazonaws.com",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload: Payload::Bytes(b""),
        };
        let signed = signer
            .sign(&request, DateTime::parse_basic(AMZ_DATE).unwrap())
            .unwrap();
        assert_eq!(
            hex(&sha256(signed.canonical_request.as_bytes())),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert!(signed.canonical_request.ends_with(EMPTY_SHA256));
        assert_eq!(
            signed.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n\
             f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(
            signed.authorization(),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn bedrock_model_id_is_encoded_twice() {
        let model = "anthropic.claude-3-5-sonnet-20240620-v1:0";
        let path = format!("/model/{}/converse-stream", uri_encode(model, true));
        assert_eq!(
            path,
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
        );
        assert_eq!(
            canonical_uri(&path, true),
            "/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse-stream"
        );
        let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-v1:0";
        let path = format!("/model/{}/converse", uri_encode(arn, true));
        assert!(path.contains("inference-profile%2Fus."), "{path}");
        assert_eq!(canonical_uri(&path, true).matches("%253A").count(), 6);
        assert!(canonical_uri(&path, true).contains("%252F"));

        let creds = Credentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token: Some("token"),
        };
        let signer = Signer::new(creds, "us-east-1", "bedrock");
        let body = br#"{"messages":[]}"#;
        let headers = [("Content-Type", "application/json")];
        let request = Request {
            method: "POST",
            host: "bedrock-runtime.us-east-1.amazonaws.com",
            path: "/model/anthropic.claude-v2%3A1/converse",
            query: "",
            headers: &headers,
            payload: Payload::Bytes(body),
        };
        let time = DateTime::from_epoch(1_440_938_160).unwrap();
        let signed = signer.sign(&request, time).unwrap();
        let body_hash = hex(&sha256(body));
        assert_eq!(
            signed.canonical_request,
            format!(
                "POST\n/model/anthropic.claude-v2%253A1/converse\n\n\
                 content-type:application/json\nhost:bedrock-runtime.us-east-1.amazonaws.com\n\
                 x-amz-content-sha256:{body_hash}\nx-amz-date:20150830T123600Z\nx-amz-security-token:token\n\n\
                 content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token\n{body_hash}"
            )
        );
        let names: Vec<&str> = signed.headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "authorization",
                "x-amz-date",
                "x-amz-content-sha256",
                "x-amz-security-token"
            ]
        );
        assert!(signed.authorization().starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, "
        ));
        // A precomputed hash signs the same; a different body or instant does not.
        let same = Request {
            payload: Payload::Sha256Hex(&body_hash.to_ascii_uppercase()),
            ..request
        };
        assert_eq!(signer.sign(&same, time).unwrap().signature, signed.signature);
        let other = Request {
            payload: Payload::Bytes(b"{}"),
            ..request
        };
        assert_ne!(signer.sign(&other, time).unwrap().signature, signed.signature);
        let later = DateTime::from_epoch(1_440_938_161).unwrap();
        assert_ne!(signer.sign(&request, later).unwrap().signature, signed.signature);
    }

    #[test]
    fn refuses_what_it_cannot_sign() {
        let creds = Credentials {
            access_key_id: "AK",
            secret_access_key: "SK",
            session_token: None,
        };
        let signer = Signer::new(creds, "us-east-1", "bedrock");
        let time = DateTime::from_epoch(0).unwrap();
        let sign = |headers: &[(&str, &str)], query: &str, payload: Payload<'_>| {
            let request = Request {
                method: "GET",
                host: "h",
                path: "/",
                query,
                headers,
                payload,
            };
            signer.sign(&request, time)
        };
        let empty = Payload::Bytes(b"");
        assert_eq!(
            sign(&[("Host", "x")], "", empty),
            Err(SigV4Error::ReservedHeader("host".into()))
        );
        assert_eq!(
            sign(&[("X-Amz-Date", "x")], "", empty),
            Err(SigV4Error::ReservedHeader("x-amz-date".into()))
        );
        assert_eq!(
            sign(&[(":authority", "x")], "", empty),
            Err(SigV4Error::InvalidHeaderName(":authority".into()))
        );
        assert_eq!(
            sign(&[("a b", "x")], "", empty),
            Err(SigV4Error::InvalidHeaderName("a b".into()))
        );
        assert_eq!(
            sign(&[("a", "x\u{0}y")], "", empty),
            Err(SigV4Error::InvalidHeaderValue("a".into()))
        );
        assert_eq!(sign(&[], "a=%zz", empty), Err(SigV4Error::InvalidQueryEscape));
        assert_eq!(sign(&[], "a=%4", empty), Err(SigV4Error::InvalidQueryEscape));
        assert_eq!(
            sign(&[], "", Payload::Sha256Hex("abc")),
            Err(SigV4Error::InvalidPayloadHash)
        );
        assert_eq!(
            sign(&[], "", Payload::Sha256Hex(&"g".repeat(64))),
            Err(SigV4Error::InvalidPayloadHash)
        );
        let bad_region = Signer { region: "", ..signer };
        let request = Request {
            method: "GET",
            host: "h",
            path: "/",
            query: "",
            headers: &[],
            payload: empty,
        };
        assert_eq!(bad_region.sign(&request, time), Err(SigV4Error::InvalidScope));
        assert!(!format!("{creds:?}").contains("SK\""), "{creds:?}");
    }

    #[test]
    fn canonical_uris_and_queries() {
        let cases = [
            ("/", true, "/"),
            ("", true, "/"),
            ("/a/b/../c/./d", true, "/a/c/d"),
            ("/a/b/..", true, "/a/"),
            ("/../../a", true, "/a"),
            ("//a//b//", true, "/a/b/"),
            ("/a%2Fb", true, "/a%252Fb"),
            ("/a b", true, "/a%20b"),
            ("/~user/x.y_z-1", true, "/~user/x.y_z-1"),
            ("//a//", false, "//a//"),
            ("/a/../b", false, "/a/../b"),
            ("a", false, "/a"),
        ];
        for (path, normalize, want) in cases {
            assert_eq!(canonical_uri(path, normalize), want, "{path:?} {normalize}");
        }
        let queries = [
            ("", ""),
            ("b=2&a=1", "a=1&b=2"),
            ("a=2&a=1", "a=1&a=2"),
            ("flag&a=", "a=&flag="),
            ("x=a+b&y=a%20b", "x=a%2Bb&y=a%20b"),
            ("k=%e1%88%b4", "k=%E1%88%B4"),
            ("k=a/b", "k=a%2Fb"),
            ("&&a=1&", "a=1"),
        ];
        for (query, want) in queries {
            assert_eq!(canonical_query(query).unwrap(), want, "{query:?}");
        }
    }

    /// The signing key derivation example of AWS's SigV4 documentation ("Examples of how to derive a
    /// signing key for Signature Version 4", IAM in us-east-1 on 2012-02-15).
    #[test]
    fn documented_signing_key() {
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }
}
