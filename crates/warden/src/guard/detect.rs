//! Secret and personal-data detectors: where in a text a credential or a piece of PII is, by
//! type, with the checks that tell a real value from a look-alike (Luhn for cards, mod-97 for
//! IBANs, the SSA's ranges for US social security numbers, parseable addresses for IPs).
//!
//! Used by the content guards on extracted request texts and, for output filtering, on answers
//! (DESIGN.md §2 step 14). Every pattern is in one `regex::RegexSet` per family, so a text is
//! read once per family whatever the number of detectors; candidates are then validated.
//! Findings carry a type and a byte range of the text, never the value; [`redact`] replaces each
//! with a typed placeholder (`[EMAIL]`, `[CARD]`, `[SECRET]`).

use std::ops::Range;

use regex::{Regex, RegexBuilder};
use regex_automata::{Input, PatternSet, meta};

/// What was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// An e-mail address.
    Email,
    /// A phone number (international or North American format).
    Phone,
    /// A payment card number (Luhn-checked).
    Card,
    /// A US social security number (in the issued ranges).
    Ssn,
    /// An IBAN (mod-97-checked).
    Iban,
    /// An IPv4 or IPv6 address (when enabled).
    IpAddress,
    /// A private-key block.
    PrivateKey,
    /// A cloud access key, API token or Warden API key.
    ApiToken,
    /// A JSON Web Token.
    Jwt,
    /// A `password=`-style assignment.
    Password,
}

impl Kind {
    /// The stable label (metrics, findings).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Card => "card",
            Kind::Ssn => "ssn",
            Kind::Iban => "iban",
            Kind::IpAddress => "ip_address",
            Kind::PrivateKey => "private_key",
            Kind::ApiToken => "api_token",
            Kind::Jwt => "jwt",
            Kind::Password => "password",
        }
    }

    /// The placeholder that replaces a redacted value.
    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL]",
            Kind::Phone => "[PHONE]",
            Kind::Card => "[CARD]",
            Kind::Ssn => "[SSN]",
            Kind::Iban => "[IBAN]",
            Kind::IpAddress => "[IP]",
            Kind::PrivateKey | Kind::ApiToken | Kind::Jwt | Kind::Password => "[SECRET]",
        }
    }

    /// Which of two overlapping values names their merged range: a specific credential over a
    /// generic `password=` assignment over personal data.
    fn rank(self) -> u8 {
        match self {
            Kind::PrivateKey | Kind::ApiToken | Kind::Jwt => 2,
            Kind::Password => 1,
            _ => 0,
        }
    }

    /// The guard this kind belongs to: `secrets` for credentials, `pii` for personal data.
    pub fn family(self) -> Family {
        if self.is_secret() {
            Family::Secrets
        } else {
            Family::Pii
        }
    }

    /// Whether this is a credential (the secrets guard) rather than personal data (PII).
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Kind::PrivateKey | Kind::ApiToken | Kind::Jwt | Kind::Password
        )
    }
}

/// One detected value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    /// Its type.
    pub kind: Kind,
    /// The detector that found it (`secret.aws_access_key`, `pii.email`).
    pub rule: &'static str,
    /// Where, in bytes of the text.
    pub range: Range<usize>,
}

/// (rule, kind, pattern, validator, gate)
type Detector = (&'static str, Kind, &'static str, fn(&str) -> bool, Gate);

/// What every match of a detector holds, so that a text is searched only where it can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// A literal the regex engine finds by itself with a vectorized substring search (a prefix
    /// like `AKIA`, or an inner one like `@`): the whole text is searched.
    Literal,
    /// An ASCII digit: only the text around digits is searched.
    Digit,
    /// `:` or `=`: only the text around them is searched.
    Assignment,
}

const DETECTORS: &[Detector] = &[
    (
        "secret.private_key",
        Kind::PrivateKey,
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\t\n\r :,.()]|-[A-Za-z0-9]){0,8192}(?:-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----|\z)",
        always,
        Gate::Literal,
    ),
    (
        "secret.aws_access_key",
        Kind::ApiToken,
        r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?-u:\b)",
        varied,
        Gate::Literal,
    ),
    (
        "secret.github_token",
        Kind::ApiToken,
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
        varied,
        Gate::Literal,
    ),
    (
        "secret.slack_token",
        Kind::ApiToken,
        r"(?-u:\b)xox[abposr]-[0-9A-Za-z-]{10,250}(?-u:\b)",
        varied,
        Gate::Literal,
    ),
    (
        "secret.openai_key",
        Kind::ApiToken,
        r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}(?:T3BlbkFJ[A-Za-z0-9_-]{20,200})?",
        openai_key,
        Gate::Literal,
    ),
    (
        "secret.anthropic_key",
        Kind::ApiToken,
        r"(?-u:\b)sk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_-]{80,200}",
        varied,
        Gate::Literal,
    ),
    (
        "secret.stripe_key",
        Kind::ApiToken,
        r"(?-u:\b)(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,128}(?-u:\b)",
        varied,
        Gate::Literal,
    ),
    (
        "secret.google_api_key",
        Kind::ApiToken,
        r"(?-u:\b)AIza[0-9A-Za-z_-]{35}(?-u:\b)",
        varied,
        Gate::Literal,
    ),
    (
        "secret.warden_api_key",
        Kind::ApiToken,
        r"(?-u:\b)wdn_[A-Za-z0-9_-]{30,64}",
        varied,
        Gate::Literal,
    ),
    (
        "secret.jwt",
        Kind::Jwt,
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,1024}\.eyJ[A-Za-z0-9_-]{8,4096}\.[A-Za-z0-9_-]{16,1024}",
        always,
        Gate::Literal,
    ),
    (
        "secret.password_assignment",
        Kind::Password,
        r#"(?i)(?-u:\b)(?:[a-z0-9]{1,32}_?)?(?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)(?:_[a-z0-9]{1,16})?(?-u:\b)["']?\s{0,4}[:=]\s{0,4}["']?[^\s"',;]{6,128}"#,
        not_placeholder,
        Gate::Assignment,
    ),
    (
        "secret.url_credentials",
        Kind::Password,
        r"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,20}://[^\s:/@]{1,64}:[^\s/@]{3,128}@",
        url_password,
        Gate::Literal,
    ),
    (
        "pii.email",
        Kind::Email,
        r"(?-u:\b)[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?-u:\b)",
        always,
        Gate::Literal,
    ),
    (
        "pii.card",
        Kind::Card,
        r"(?-u:\b)(?:[0-9][ -]?){12,18}[0-9](?-u:\b)",
        card,
        Gate::Digit,
    ),
    (
        "pii.ssn",
        Kind::Ssn,
        r"(?-u:\b)\d{3}-\d{2}-\d{4}(?-u:\b)",
        ssn,
        Gate::Literal,
    ),
    (
        "pii.iban",
        Kind::Iban,
        r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
        iban,
        Gate::Digit,
    ),
    (
        "pii.phone",
        Kind::Phone,
        r"(?:\+[0-9]{1,3}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){2,4}|\([0-9]{3}\)[ .-]?[0-9]{3}[ .-][0-9]{4}|(?-u:\b)[0-9]{3}[.-][0-9]{3}[.-][0-9]{4}(?:-[A-Za-z0-9]{1,8})?|(?-u:\b)0[1-9][0-9]{0,3}(?:[ .-][0-9]{2,4}){0,3}[ .-][0-9]{2,8}|\(0[1-9][0-9]{0,3}\)[ .-]?[0-9]{2,4}(?:[ .-][0-9]{2,4}){0,2}[ .-][0-9]{2,8})(?-u:\b)",
        phone,
        Gate::Digit,
    ),
    (
        "pii.ipv4",
        Kind::IpAddress,
        r"(?-u:\b)(?:\d{1,3}\.){3}\d{1,3}(?-u:\b)",
        ipv4,
        Gate::Literal,
    ),
    (
        "pii.ipv6",
        Kind::IpAddress,
        r"(?i)(?-u:\b)[0-9a-f]{1,4}(?::{1,2}[0-9a-f]{1,4}){2,7}(?-u:\b)",
        ipv6,
        Gate::Literal,
    ),
];

fn always(_: &str) -> bool {
    true
}

/// Random key material: at least eight distinct characters (a real 16-character key has about
/// twelve; `AKIAXXXXXXXXXXXXXXXX` and `ghp_xxxx…` placeholders have four).
fn varied(token: &str) -> bool {
    let mut seen = [false; 128];
    let mut distinct = 0;
    for b in token.bytes().filter(u8::is_ascii_alphanumeric) {
        if !std::mem::replace(&mut seen[usize::from(b)], true) {
            distinct += 1;
        }
    }
    distinct >= 8
}

/// An OpenAI key that is not an Anthropic one (whose prefix `sk-ant-` it shares).
fn openai_key(value: &str) -> bool {
    !value.starts_with("sk-ant-") && varied(value)
}

/// `scheme://user:password@`: the password is not a placeholder.
fn url_password(candidate: &str) -> bool {
    let credentials = candidate.rsplit("://").next().unwrap_or("");
    let password = credentials
        .split_once(':')
        .map_or("", |(_, p)| p)
        .trim_end_matches('@');
    not_placeholder(&format!("password={password}"))
}

/// Values that are obviously not secrets: placeholders and references.
fn not_placeholder(assignment: &str) -> bool {
    let value = assignment
        .split(['=', ':'])
        .nth(1)
        .unwrap_or("")
        .trim()
        .trim_matches(['"', '\'']);
    let lower = value.to_ascii_lowercase();
    // Words that say what goes here rather than being it (`your-password`, `example123`).
    let descriptive = ["your", "example", "placeholder", "changeme", "redacted"];
    !(value.starts_with('$')
        || descriptive.iter().any(|word| lower.starts_with(word))
        || lower.contains("xxxx")
        || value.starts_with('{')
        || value.starts_with('<')
        || value.starts_with('%')
        || lower.starts_with("env:")
        || lower.starts_with("file:")
        || value
            .chars()
            .all(|c| c == '*' || c == 'x' || c == 'X' || c == '.')
        || matches!(lower.as_str(), "password" | "secret"))
}

/// The digits of a card-length candidate, without allocating: `None` when it has more than
/// nineteen (no card has).
struct Digits {
    digits: [u8; 19],
    len: usize,
}

impl Digits {
    fn of(candidate: &str) -> Option<Digits> {
        let mut digits = Digits {
            digits: [0; 19],
            len: 0,
        };
        for b in candidate.bytes().filter(u8::is_ascii_digit) {
            *digits.digits.get_mut(digits.len)? = b - b'0';
            digits.len += 1;
        }
        Some(digits)
    }

    fn as_slice(&self) -> &[u8] {
        &self.digits[..self.len]
    }

    /// The number the first `n` digits spell (0 when there are fewer).
    fn prefix(&self, n: usize) -> u32 {
        self.as_slice()
            .get(..n)
            .map_or(0, |p| p.iter().fold(0, |acc, &d| acc * 10 + u32::from(d)))
    }
}

/// A card number: a known issuer prefix with that issuer's length, and the Luhn checksum.
fn card(candidate: &str) -> bool {
    let Some(digits) = Digits::of(candidate) else {
        return false;
    };
    let len = digits.len;
    let issuer = match digits.prefix(1) {
        4 => matches!(len, 13 | 16 | 19),                            // Visa
        5 => (51..=55).contains(&digits.prefix(2)) && len == 16,     // Mastercard
        2 => (2221..=2720).contains(&digits.prefix(4)) && len == 16, // Mastercard
        3 => match digits.prefix(2) {
            34 | 37 => len == 15,                          // Amex
            35 => (16..=19).contains(&len),                // JCB
            30 | 36 | 38 | 39 => (14..=19).contains(&len), // Diners
            _ => false,
        },
        6 => (16..=19).contains(&len), // Discover, UnionPay, Maestro
        _ => false,
    };
    issuer && luhn(&digits)
}

/// The Luhn checksum of a 13–19 digit number (not all one digit).
fn luhn(digits: &Digits) -> bool {
    let digits = digits.as_slice();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A US SSN in the issued ranges: area not 000, 666 or 900–999; group not 00; serial not 0000.
fn ssn(candidate: &str) -> bool {
    let mut parts = candidate.split('-');
    let (Some(area), Some(group), Some(serial)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let area: u32 = area.parse().unwrap_or(0);
    area != 0 && area != 666 && area < 900 && group != "00" && serial != "0000"
}

/// IBAN lengths by country (the SWIFT IBAN registry), for the countries that issue them.
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// An IBAN of its country's length whose mod-97 check holds (ISO 13616). The length matters:
/// a shorter prefix of a longer number passes mod-97 one time in 97.
fn iban(candidate: &str) -> bool {
    let compact = || candidate.chars().filter(|c| !c.is_whitespace());
    let len = compact().count();
    let country: [char; 2] = {
        let mut head = compact();
        [head.next().unwrap_or(' '), head.next().unwrap_or(' ')]
    };
    let expected = IBAN_LENGTHS
        .iter()
        .find(|(code, _)| code.chars().eq(country))
        .map(|(_, len)| *len);
    if expected.is_some_and(|expected| len != expected) || !(15..=34).contains(&len) {
        return false;
    }
    // The check digits and country code move to the end (ISO 13616).
    let mut remainder: u32 = 0;
    for c in compact().skip(4).chain(compact().take(4)) {
        let value = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        let width = if value >= 10 { 100 } else { 10 };
        remainder = (remainder * width + value) % 97;
    }
    remainder == 1
}

/// Whether text ending so is a number that a match after it would continue (`5194 0283 8304`
/// holds no phone number `0283 8304`): a digit, or a digit and one separator. Two bytes of
/// look-behind, within what a stream keeps.
fn continues_a_number(before: &str) -> bool {
    let tail = before.as_bytes();
    match tail {
        [.., d] if d.is_ascii_digit() => true,
        [.., d, b' ' | b'-' | b'.' | b'/'] => d.is_ascii_digit(),
        _ => false,
    }
}

/// A phone number: international, 8–15 digits (E.164's range) and not a card; national with a
/// trunk `0`, 9–12 digits; North American, area code and exchange starting 2–9 (NANP). A
/// product code (`400-123-4567-XL`) is none of these.
fn phone(candidate: &str) -> bool {
    if candidate.bytes().any(|b| b.is_ascii_alphabetic()) {
        return false;
    }
    let (mut n, mut first, mut fourth) = (0, None, None);
    for d in candidate
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
    {
        match n {
            0 => first = Some(d),
            3 => fourth = Some(d),
            _ => {}
        }
        n += 1;
    }
    if candidate.starts_with('+') {
        (8..=15).contains(&n) && !Digits::of(candidate).is_some_and(|d| luhn(&d))
    } else if first == Some(0) {
        (9..=12).contains(&n)
    } else {
        n == 10 && first >= Some(2) && fourth >= Some(2)
    }
}

fn ipv4(candidate: &str) -> bool {
    candidate.parse::<std::net::Ipv4Addr>().is_ok()
}

fn ipv6(candidate: &str) -> bool {
    candidate.parse::<std::net::Ipv6Addr>().is_ok()
}

/// How many lengths of one match are checked (the whole and its shorter prefixes).
const MAX_CUTS: usize = 4;

/// The compiled detectors.
#[derive(Clone, Debug)]
pub struct Detectors {
    /// One per detector, in table order.
    regexes: Vec<meta::Regex>,
    /// The detectors with a gate byte, as one multi-pattern regex: which of them match in a
    /// window, in one pass over it.
    gated: meta::Regex,
    /// The table index of each pattern of `gated`.
    gated_index: Vec<usize>,
    /// The longest text a gated detector matches: how far from a gate byte a match can reach.
    reach: usize,
    ip_addresses: bool,
}

impl Detectors {
    /// Every detector; IP addresses only when `ip_addresses` (they are often not personal).
    pub fn new(ip_addresses: bool) -> Result<Detectors, DetectorError> {
        let config = || meta::Config::new().nfa_size_limit(Some(16 << 20));
        let mut reach = 0;
        let mut regexes = Vec::with_capacity(DETECTORS.len());
        let mut gated_index = Vec::new();
        for (index, &(rule, _, pattern, _, gate)) in DETECTORS.iter().enumerate() {
            let error = |e: &dyn std::fmt::Display| DetectorError {
                rule,
                message: e.to_string(),
            };
            regexes.push(
                meta::Regex::builder()
                    .configure(config())
                    .build(pattern)
                    .map_err(|e| error(&e))?,
            );
            if gate != Gate::Literal {
                let longest = regex_automata::util::syntax::parse(pattern)
                    .map_err(|e| error(&e))?
                    .properties()
                    .maximum_len()
                    .ok_or_else(|| error(&"matches text of any length"))?;
                reach = reach.max(longest);
                gated_index.push(index);
            }
        }
        let gated_patterns: Vec<&str> = gated_index.iter().map(|&i| DETECTORS[i].2).collect();
        let gated = meta::Regex::builder()
            .configure(config().match_kind(regex_automata::MatchKind::All))
            .build_many(&gated_patterns)
            .map_err(|e| DetectorError {
                rule: "(gated detectors)",
                message: e.to_string(),
            })?;
        Ok(Detectors {
            regexes,
            gated,
            gated_index,
            reach,
            ip_addresses,
        })
    }

    /// Every valid value in `text`, in order, without overlaps (a secret wins over the PII
    /// inside it: an e-mail address in a private key is the key).
    pub fn scan(&self, text: &str) -> Vec<Detected> {
        resolve(self.candidates(
            text,
            0,
            &|kind| kind != Kind::IpAddress || self.ip_addresses,
            None,
        ))
    }

    /// The patterns, in table order, of the detectors `keep` selects (and their indices).
    pub(crate) fn patterns(&self, keep: &dyn Fn(Kind) -> bool) -> Vec<(usize, &'static str)> {
        (0..DETECTORS.len())
            .filter(|&i| self.enabled(i, keep))
            .map(|i| (i, DETECTORS[i].2))
            .collect()
    }

    fn enabled(&self, index: usize, keep: &dyn Fn(Kind) -> bool) -> bool {
        let kind = DETECTORS[index].1;
        keep(kind) && (kind != Kind::IpAddress || self.ip_addresses)
    }

    /// Every valid value of a kind `keep` selects that starts at or after byte `from` of `text`
    /// (the bytes before it count only as look-behind), overlaps included, unsorted. `spans`, if
    /// given, receives every pattern match, valid or not: the search resumes after each, so a
    /// stream must not be cut inside one.
    pub(crate) fn candidates(
        &self,
        text: &str,
        from: usize,
        keep: &dyn Fn(Kind) -> bool,
        mut spans: Option<&mut Vec<Range<usize>>>,
    ) -> Vec<Detected> {
        let mut found: Vec<Detected> = Vec::new();
        for (index, detector) in DETECTORS.iter().enumerate() {
            if detector.4 == Gate::Literal && self.enabled(index, keep) {
                self.find_in(
                    index,
                    text,
                    from..text.len(),
                    &mut found,
                    spans.as_deref_mut(),
                );
            }
        }
        // The others only around their gate bytes, and only those that match there.
        let mut matched = PatternSet::new(self.gated_index.len());
        for window in gated_windows(text, from, self.reach) {
            matched.clear();
            self.gated
                .which_overlapping_matches(&Input::new(text).span(window.clone()), &mut matched);
            for pattern in matched.iter() {
                let index = self.gated_index[pattern.as_usize()];
                if self.enabled(index, keep) {
                    self.find_in(
                        index,
                        text,
                        window.clone(),
                        &mut found,
                        spans.as_deref_mut(),
                    );
                }
            }
        }
        found
    }

    /// The valid values detector `index` finds starting in `window` of `text` (the text
    /// outside it counts as look-around only).
    fn find_in(
        &self,
        index: usize,
        text: &str,
        window: Range<usize>,
        found: &mut Vec<Detected>,
        mut spans: Option<&mut Vec<Range<usize>>>,
    ) {
        let (rule, kind, _, valid, _) = DETECTORS[index];
        let regex = &self.regexes[index];
        let mut at = window.start;
        while at < window.end {
            let Some(m) = regex.find(Input::new(text).span(at..window.end)) else {
                break;
            };
            if let Some(spans) = spans.as_deref_mut() {
                spans.push(m.range());
            }
            // A greedy match can run into the next word ("DE89 … 00 A"): when it fails its
            // check, its shorter prefixes that end before a space are tried — the three
            // longest, enough for a value followed by a short number and bounded for text
            // that is all separators and digits (`1 1 1 …`).
            let value = &text[m.range()];
            let cuts = std::iter::once(value.len())
                .chain(value.rmatch_indices(' ').map(|(i, _)| i))
                .take(MAX_CUTS);
            let national = kind == Kind::Phone && !value.starts_with('+');
            if let Some(end) = cuts
                .map(|end| value[..end].trim_end().len())
                .find(|&end| end > 0 && valid(&value[..end]))
                .filter(|_| !(national && continues_a_number(&text[..m.start()])))
            {
                found.push(Detected {
                    kind,
                    rule,
                    range: m.start()..m.start() + end,
                });
                at = m.start() + end;
            } else {
                // Or it started too early ("123-45-6789 4111 1111 1111 1111" reads as one
                // number): the search goes on from its next group, not past its end.
                at = value
                    .find([' ', '-'])
                    .map_or(m.end(), |i| m.start() + i + 1);
            }
        }
    }
}

/// The parts of `text[from..]` a gated detector can match in: every byte within `reach` of a
/// digit, `:` or `=` (a match holds one and is at most `reach` long), merged where they touch
/// and widened to character boundaries. Bytes are tested 32 at a time without a branch per
/// byte, so text without gate bytes passes at memory speed.
fn gated_windows(text: &str, from: usize, reach: usize) -> Vec<Range<usize>> {
    let gate = |b: u8| b.is_ascii_digit() | (b == b':') | (b == b'=');
    let bytes = text.as_bytes();
    let widen = |window: Range<usize>| {
        let (mut start, mut end) = (window.start, window.end.min(bytes.len()));
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        start..end
    };
    let mut windows: Vec<Range<usize>> = Vec::new();
    let mut current: Option<Range<usize>> = None;
    let mut block = from;
    while block < bytes.len() {
        let end = (block + 32).min(bytes.len());
        let chunk = &bytes[block..end];
        if chunk.iter().fold(false, |any, &b| any | gate(b)) {
            // Gate bytes of one block are closer than the reach, so their windows are one: the
            // first and the last of the block say where it starts and ends.
            let first = chunk.iter().position(|&b| gate(b)).unwrap_or(0);
            let last = chunk.iter().rposition(|&b| gate(b)).unwrap_or(first);
            let step = if reach < chunk.len() {
                1
            } else {
                (last - first).max(1)
            };
            let positions = (first..=last).step_by(step);
            for at in positions.filter(|&i| gate(chunk[i])).map(|i| block + i) {
                let start = at.saturating_sub(reach).max(from);
                match &mut current {
                    Some(window) if start <= window.end => {
                        window.end = window.end.max(at + 1 + reach)
                    }
                    _ => {
                        windows.extend(current.take().map(widen));
                        current = Some(start..at + 1 + reach);
                    }
                }
            }
        }
        block = end;
    }
    windows.extend(current.map(widen));
    windows
}

/// Why the detectors do not compile (a unit test holds that they do).
#[derive(Clone, Debug, thiserror::Error)]
#[error("detector {rule}: {message}")]
pub struct DetectorError {
    rule: &'static str,
    message: String,
}

/// Candidates in order, without overlaps: values that overlap merge into one that covers them
/// all (so no part of either is left readable), named after the strongest kind among them (an
/// e-mail address inside a private key is the key; `X-API-Key: wdn_…` is a Warden key, not a
/// generic assignment), else after the first.
pub(crate) fn resolve(mut found: Vec<Detected>) -> Vec<Detected> {
    found.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
    });
    let mut kept: Vec<Detected> = Vec::with_capacity(found.len());
    for d in found {
        match kept.last_mut() {
            Some(last) if d.range.start < last.range.end => {
                last.range.end = last.range.end.max(d.range.end);
                if d.kind.rank() > last.kind.rank() {
                    last.kind = d.kind;
                    last.rule = d.rule;
                }
            }
            _ => kept.push(d),
        }
    }
    kept
}

/// `text` with every detected value replaced by its placeholder.
pub fn redact(text: &str, detected: &[Detected]) -> String {
    redact_ranges(
        text,
        detected
            .iter()
            .map(|d| (d.range.clone(), d.kind.placeholder()))
            .collect(),
    )
}

/// `text` with each range replaced by its placeholder; overlapping ranges merge into the first.
pub(crate) fn redact_ranges(text: &str, mut ranges: Vec<(Range<usize>, &'static str)>) -> String {
    ranges.sort_by_key(|(range, _)| (range.start, std::cmp::Reverse(range.end)));
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, placeholder) in ranges {
        if range.end <= at || range.end > text.len() {
            continue;
        }
        if range.start < at {
            // Overlaps the previous replacement: cover the rest of it too.
            at = range.end;
            continue;
        }
        out.push_str(&text[at..range.start]);
        out.push_str(placeholder);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// What a data guard does with a finding in a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataAction {
    /// Refuse the request (403 `secret-detected` / `pii-detected`).
    Block,
    /// Forward it, marked with `X-Warden-Guard` (types only).
    Flag,
    /// Replace each value with its placeholder in the forwarded body.
    Redact,
}

/// `guards.blocked_patterns`: operator patterns, each with its own action, in one set.
#[derive(Clone, Debug)]
pub struct BlockedPatterns {
    set: regex::RegexSet,
    patterns: Vec<(String, DataAction, Regex)>,
}

impl BlockedPatterns {
    /// Compiles `(id, pattern, action)` entries; an error names the entry's index.
    pub fn new(
        entries: &[(String, String, DataAction)],
    ) -> Result<BlockedPatterns, (usize, String)> {
        let mut patterns = Vec::with_capacity(entries.len());
        for (i, (id, pattern, action)) in entries.iter().enumerate() {
            let regex = RegexBuilder::new(pattern)
                .size_limit(4 << 20)
                .build()
                .map_err(|e| (i, e.to_string()))?;
            patterns.push((id.clone(), *action, regex));
        }
        let set = regex::RegexSetBuilder::new(entries.iter().map(|e| e.1.as_str()))
            .size_limit(32 << 20)
            .dfa_size_limit(32 << 20)
            .build()
            .map_err(|e| (0, e.to_string()))?;
        Ok(BlockedPatterns { set, patterns })
    }
}

/// `guards.secrets`, `guards.pii.input` and `guards.blocked_patterns` of a route: what to do
/// with each family; `None` leaves a family alone.
#[derive(Clone, Debug)]
pub struct DataGuard {
    /// The compiled detectors (absent when secrets and PII are both off).
    pub detectors: Option<std::sync::Arc<Detectors>>,
    /// What to do with credentials.
    pub secrets: Option<DataAction>,
    /// What to do with personal data.
    pub pii: Option<DataAction>,
    /// Operator patterns.
    pub patterns: Option<std::sync::Arc<BlockedPatterns>>,
}

/// Which guard a finding belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `guards.secrets`: credentials.
    Secrets,
    /// `guards.pii`: personal data.
    Pii,
    /// `guards.blocked_patterns`: operator patterns.
    BlockedPatterns,
}

impl Family {
    const ALL: [Family; 3] = [Family::Secrets, Family::Pii, Family::BlockedPatterns];

    /// The stable label (metrics, the flag header, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Secrets => "secrets",
            Family::Pii => "pii",
            Family::BlockedPatterns => "blocked_patterns",
        }
    }

    /// What the flag header calls this family's labels: kinds of value, or pattern ids.
    pub fn labels(self) -> &'static str {
        match self {
            Family::BlockedPatterns => "ids",
            Family::Secrets | Family::Pii => "kinds",
        }
    }
}

/// The data findings of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataReport {
    /// A family whose action is `block` matched: the family and what matched (kinds or ids).
    pub blocked: Option<(Family, Vec<String>)>,
    /// Flagged kinds or pattern ids, by family.
    pub flagged: Vec<(Family, Vec<String>)>,
    /// Texts to rewrite: (JSON pointer, redacted text).
    pub redactions: Vec<(String, String)>,
    /// Every finding: (family, rule or pattern id, JSON pointer of its text), for metrics and
    /// the request's record.
    pub rules: Vec<(Family, String, String)>,
}

impl DataGuard {
    /// Scans every extracted text except the operator's system prompt.
    pub fn inspect(&self, extracted: &crate::body::format::ExtractedBody) -> DataReport {
        use crate::body::format::Role;
        let mut report = DataReport::default();
        let mut flagged: [Vec<String>; 3] = Default::default();
        for text in extracted.texts() {
            if text.role == Role::System {
                continue;
            }
            // (family, label, action, range, placeholder)
            let mut found: Vec<(Family, String, DataAction, Range<usize>, &'static str)> =
                Vec::new();
            // Built once per text, and only for a text with findings.
            let pointer = std::cell::OnceCell::new();
            let pointer = || pointer.get_or_init(|| text.pointer()).clone();
            if let Some(detectors) = &self.detectors {
                for d in detectors.scan(text.content) {
                    let family = d.kind.family();
                    let action = match family {
                        Family::Secrets => self.secrets,
                        _ => self.pii,
                    };
                    if let Some(action) = action {
                        report.rules.push((family, d.rule.to_owned(), pointer()));
                        found.push((
                            family,
                            d.kind.as_str().to_owned(),
                            action,
                            d.range,
                            d.kind.placeholder(),
                        ));
                    }
                }
            }
            if let Some(patterns) = &self.patterns {
                for index in patterns.set.matches(text.content).iter() {
                    let (id, action, regex) = &patterns.patterns[index];
                    report
                        .rules
                        .push((Family::BlockedPatterns, id.clone(), pointer()));
                    for m in regex.find_iter(text.content) {
                        let family = Family::BlockedPatterns;
                        found.push((family, id.clone(), *action, m.range(), "[REDACTED]"));
                    }
                }
            }
            let mut redact_here: Vec<(Range<usize>, &'static str)> = Vec::new();
            for (family, label, action, range, placeholder) in found {
                match action {
                    DataAction::Block => {
                        let blocked = report.blocked.get_or_insert((family, Vec::new()));
                        if blocked.0 == family && !blocked.1.contains(&label) {
                            blocked.1.push(label);
                        }
                    }
                    DataAction::Flag => {
                        let labels = &mut flagged[family as usize];
                        if !labels.contains(&label) {
                            labels.push(label);
                        }
                    }
                    DataAction::Redact => redact_here.push((range, placeholder)),
                }
            }
            if !redact_here.is_empty() {
                report
                    .redactions
                    .push((text.pointer(), redact_ranges(text.content, redact_here)));
            }
        }
        for (family, labels) in Family::ALL.into_iter().zip(flagged) {
            if !labels.is_empty() {
                report.flagged.push((family, labels));
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(detectors: &Detectors, text: &str) -> Vec<Kind> {
        detectors.scan(text).into_iter().map(|d| d.kind).collect()
    }

    /// What `candidates` finds, sorted, searching every detector over the whole text.
    fn candidates_everywhere(
        detectors: &Detectors,
        text: &str,
        from: usize,
    ) -> (Vec<Detected>, Vec<Range<usize>>) {
        let (mut found, mut spans) = (Vec::new(), Vec::new());
        for index in 0..DETECTORS.len() {
            detectors.find_in(index, text, from..text.len(), &mut found, Some(&mut spans));
        }
        found.sort_by_key(|d| (d.range.start, d.range.end, d.rule));
        spans.sort_by_key(|r| (r.start, r.end));
        (found, spans)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Searching only around digits and `:`/`=` finds exactly what searching the whole
        /// text does: every match, valid or not, and every value.
        #[test]
        fn gated_search_finds_what_a_whole_text_search_does(
            text in "(?:[0-9]{1,5}|[A-Z]{2}[0-9]{2}|[a-z]{1,8}|password|pwd_x|api-key|[ .:=+()/@'-]|é|\\n){0,60}",
            cut in 0usize..40,
        ) {
            static ALL: std::sync::OnceLock<Detectors> = std::sync::OnceLock::new();
            let detectors = ALL.get_or_init(|| Detectors::new(true).expect("detectors"));
            let mut from = cut.min(text.len());
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let mut spans = Vec::new();
            let mut found = detectors.candidates(&text, from, &|_| true, Some(&mut spans));
            found.sort_by_key(|d| (d.range.start, d.range.end, d.rule));
            spans.sort_by_key(|r| (r.start, r.end));
            proptest::prop_assert_eq!((found, spans), candidates_everywhere(detectors, &text, from));
        }
    }

    #[test]
    fn gates_hold_in_every_match_and_windows_reach_far_enough() {
        let detectors = Detectors::new(true).expect("detectors");
        // The gated detectors' longest match is within the reach.
        assert!(detectors.reach >= 128);
        // Values far from the gate byte are still found: a long IBAN whose only digits are at
        // its start, and an assignment whose keyword is 60 bytes before its `=`.
        let iban = "GB82 WEST 1234 5698 7654 32";
        assert_eq!(
            kinds(&detectors, &format!("{} pay {iban} now", "x ".repeat(300))),
            [Kind::Iban]
        );
        let text = format!(
            "{} abcdefghijklmnopqrstuvwxyz012345_client_secret_abcdefghijklmnop = hunter2hunter2 ok",
            "word ".repeat(200)
        );
        assert_eq!(kinds(&detectors, &text), [Kind::Password]);
        assert_eq!(
            gated_windows("ab 12 cd 5", 0, 1),
            [2..6, 8..10],
            "a window reaches one byte each side of the digits"
        );
        assert!(gated_windows(&"no digits here ".repeat(100), 0, 60).is_empty());
        assert_eq!(
            gated_windows("é1é", 0, 1).first(),
            Some(&(0..5)),
            "widened to characters"
        );
    }

    #[test]
    fn real_values_are_found_and_look_alikes_are_not() {
        // (text, what must be found)
        let cases: &[(&str, &[Kind])] = &[
            (
                "mail me at jane.doe+work@example.co.uk today",
                &[Kind::Email],
            ),
            ("card 4111 1111 1111 1111 exp 12/29", &[Kind::Card]),
            ("card 4111-1111-1111-1112", &[]), // fails Luhn
            ("order 1234567890123", &[]),      // fails Luhn
            ("SSN 123-45-6789", &[Kind::Ssn]),
            ("SSN 666-45-6789 or 000-12-3456 or 912-34-5678", &[]),
            ("IBAN DE89 3704 0044 0532 0130 00", &[Kind::Iban]),
            ("IBAN DE89 3704 0044 0532 0130 01", &[]), // fails mod-97
            (
                "call +44 20 7946 0958 or (415) 555-2671",
                &[Kind::Phone, Kind::Phone],
            ),
            ("released 2024-01-15, version 1.2.3", &[]),
            (
                "host 192.168.10.20 and ::1 and 2001:db8::8a2e:370:7334",
                &[Kind::IpAddress, Kind::IpAddress],
            ),
            ("version 999.300.1.1", &[]),
            ("AKIAIOSFODNN7EXAMPLE is the key", &[Kind::ApiToken]),
            (
                "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                &[Kind::ApiToken],
            ),
            (
                "use sk-proj-abcdefghijklmnopqrstuvwxyz123456",
                &[Kind::ApiToken],
            ),
            (
                "wdn_0123456789abcdefghijklmnopqrstuvwxyzABCD",
                &[Kind::ApiToken],
            ),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
                &[Kind::Jwt],
            ),
            ("password=hunter2hunter2", &[Kind::Password]),
            ("password: ${DB_PASSWORD}", &[]),
            ("password=********", &[]),
            ("Reset your password in settings.", &[]),
            (
                "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----",
                &[Kind::PrivateKey],
            ),
            (
                "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----",
                &[],
            ),
        ];
        let detectors = Detectors::new(true).expect("detectors");
        for (text, expected) in cases {
            assert_eq!(kinds(&detectors, text), expected.to_vec(), "{text}");
        }
    }

    #[test]
    fn redaction_uses_typed_placeholders_and_keeps_the_rest() {
        let detectors = Detectors::new(false).expect("detectors");
        let text = "Contact jane@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE.";
        let found = detectors.scan(text);
        assert_eq!(
            redact(text, &found),
            "Contact [EMAIL], card [CARD], key [SECRET]."
        );
        // Overlapping ranges become one placeholder.
        assert_eq!(
            redact_ranges(
                "abcdefgh",
                vec![(2..5, "[X]"), (1..4, "[Y]"), (6..7, "[Z]")]
            ),
            "a[Y]f[Z]h"
        );
        // IP addresses are off unless enabled.
        assert!(detectors.scan("from 10.0.0.1").is_empty());
    }

    /// Recall by kind and the false-positive rate on look-alikes of a labeled corpus
    /// (`kind<TAB>text` lines); the misses are printed.
    fn quality(name: &str, corpus: &str) -> (f64, f64, Vec<(String, usize, usize)>) {
        let plain = Detectors::new(false).expect("detectors");
        let with_ip = Detectors::new(true).expect("detectors");
        let mut found: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        let mut look_alikes = (0, 0);
        for line in corpus
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (label, text) = line.split_once('\t').expect("kind<TAB>text");
            let text = text.replace("\\n", "\n");
            let detectors = if label == "ip" { &with_ip } else { &plain };
            let kinds: Vec<&str> = detectors
                .scan(&text)
                .iter()
                .map(|d| d.kind.as_str())
                .collect();
            if label == "none" {
                look_alikes.0 += 1;
                if !kinds.is_empty() {
                    look_alikes.1 += 1;
                    eprintln!("  {name}: false positive {kinds:?}: {text}");
                }
                continue;
            }
            let label = if label == "ip" { "ip_address" } else { label };
            let entry = found.entry(label.to_owned()).or_default();
            entry.0 += 1;
            if kinds.contains(&label) {
                entry.1 += 1;
            } else {
                eprintln!("  {name}: missed {label} ({kinds:?}): {text}");
            }
        }
        let (total, hits) = found.values().fold((0, 0), |(t, h), (n, k)| (t + n, h + k));
        let recall = hits as f64 / total as f64;
        let fpr = look_alikes.1 as f64 / look_alikes.0 as f64;
        let by_kind: Vec<(String, usize, usize)> =
            found.into_iter().map(|(k, (n, h))| (k, n, h)).collect();
        eprintln!(
            "{name}: {total} values, recall {recall:.3} ({by_kind:?}); {} look-alikes, false positives {fpr:.3}",
            look_alikes.0
        );
        (recall, fpr, by_kind)
    }

    /// The corpus the detectors were checked and fixed against (`tests/corpus/pii_secrets.txt`:
    /// synthetic values; look-alikes that fail exactly the checks — Luhn, mod-97, SSA ranges —
    /// public keys and certificates, password mentions and placeholders).
    #[test]
    fn detection_quality_on_the_labeled_corpus() {
        let (recall, fpr, by_kind) = quality(
            "labeled",
            include_str!("../../tests/corpus/pii_secrets.txt"),
        );
        assert!(recall >= 0.95, "recall {recall}");
        for (kind, n, hits) in by_kind {
            assert!(hits as f64 / n as f64 >= 0.9, "{kind}: {hits}/{n}");
        }
        assert!(fpr <= 0.05, "false positives {fpr}");
    }

    /// A second corpus, written after the first had been used for fixes (other countries,
    /// formats, contexts and look-alikes). Its first run found 0.891 recall and 0.147 false
    /// positives (national phone formats, URL credentials, `PGPASSWORD=`, placeholder keys,
    /// product codes read as phones); the fixes were general, and it now guards them.
    #[test]
    fn detection_quality_on_the_fresh_corpus() {
        let (recall, fpr, _) = quality(
            "fresh",
            include_str!("../../tests/corpus/pii_secrets_fresh.txt"),
        );
        assert!(recall >= 0.95, "recall {recall}");
        assert!(fpr <= 0.05, "false positives {fpr}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const VALUES: &[&str] = &[
            "jane.doe@example.com",
            "4111 1111 1111 1111",
            "123-45-6789",
            "DE89 3704 0044 0532 0130 00",
            "+44 20 7946 0958",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "password=hunter2hunter2",
        ];

        fn detectors() -> &'static Detectors {
            static DETECTORS: std::sync::OnceLock<Detectors> = std::sync::OnceLock::new();
            DETECTORS.get_or_init(|| Detectors::new(false).expect("detectors"))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever surrounds the values, redaction leaves valid UTF-8 in which no detector
            /// finds anything, and keeps the text around the values.
            #[test]
            fn redaction_leaves_nothing_detectable(
                pieces in proptest::collection::vec(("[a-zA-Zé日 .,;:!?\\-]{0,12}", 0..VALUES.len()), 1..6),
                tail in "[a-zA-Zé日 .,]{0,12}",
            ) {
                let mut text = String::new();
                for (filler, value) in &pieces {
                    text.push_str(filler);
                    text.push(' ');
                    text.push_str(VALUES[*value]);
                    text.push(' ');
                }
                text.push_str(&tail);
                let found = detectors().scan(&text);
                prop_assert!(found.len() >= pieces.len(), "{text:?}: {found:?}");
                let redacted = redact(&text, &found);
                prop_assert!(std::str::from_utf8(redacted.as_bytes()).is_ok());
                prop_assert!(detectors().scan(&redacted).is_empty(), "{redacted:?}");
                for value in VALUES {
                    prop_assert!(!redacted.contains(value), "{redacted:?}");
                }
                prop_assert!(redacted.ends_with(tail.as_str()));
            }
        }
    }
}
