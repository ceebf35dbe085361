//! Transcript normalization and phrase matching.
//!
//! Owns the one canonical form every transcript, phrase, pattern subject and
//! enum synonym is reduced to before comparison, so a phrase written in YAML
//! and the words an STT engine produced meet on equal terms:
//!
//! - lowercase; apostrophes dropped (`I'd` → `id`, `o'clock` → `oclock`);
//!   `a.m.`/`p.m.` → `am`/`pm`; any other punctuation becomes a space, except
//!   `:` and `/` between digits (`2:30`, `3/5`) and `.` between digits (read
//!   as `:`, `2.30` → `2:30`);
//! - digits glued to letters are split (`2pm` → `2 pm`) unless the letters
//!   are an ordinal suffix (`5th` stays);
//! - number words become digits, up to the hundreds: `two` → `2`,
//!   `twenty five` → `25`, `one hundred and five` → `105`; ordinals likewise
//!   (`fifth` → `5th`, `twenty third` → `23rd`). A unit followed by a tens
//!   word is two numbers (`two thirty` → `2 30`), which is how times are said.
//!
//! Matching is word based: a phrase matches when all its words appear in the
//! utterance in order (other words may sit between them), each word equal to
//! the spoken token or, for words of four letters or more, a prefix of it
//! (`book` matches `booking`, `hour` matches `hours`).

/// A normalized utterance: tokens and the same tokens joined by single spaces
/// (the subject of regex patterns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Utterance {
    /// Normalized tokens, in spoken order.
    pub(crate) tokens: Vec<String>,
    /// `tokens` joined with one space.
    pub(crate) text: String,
}

impl Utterance {
    /// Normalizes raw transcript text.
    pub(crate) fn new(raw: &str) -> Self {
        let tokens = normalize(raw);
        let text = tokens.join(" ");
        Utterance { tokens, text }
    }

    /// Whether nothing was said (only punctuation or whitespace).
    pub(crate) fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Normalizes `raw` into tokens (see the module doc for the rules).
pub(crate) fn normalize(raw: &str) -> Vec<String> {
    let cleaned = clean(raw);
    let mut tokens = Vec::new();
    for word in cleaned.split_whitespace() {
        split_digits_letters(word, &mut tokens);
    }
    numbers_to_digits(&tokens)
}

/// Whether `phrase` matches `tokens`: every phrase word found in order.
/// An empty phrase never matches.
pub(crate) fn phrase_matches(tokens: &[String], phrase: &[String]) -> bool {
    if phrase.is_empty() {
        return false;
    }
    let mut it = tokens.iter();
    phrase.iter().all(|w| it.any(|t| word_eq(w, t)))
}

/// Where `phrase` occurs as a contiguous run in `tokens` (empty tokens never
/// match), as `(start, end)` token indexes, end exclusive.
pub(crate) fn find_contiguous(tokens: &[&str], phrase: &[String]) -> Option<(usize, usize)> {
    if phrase.is_empty() || phrase.len() > tokens.len() {
        return None;
    }
    (0..=tokens.len() - phrase.len())
        .find(|&i| phrase.iter().zip(&tokens[i..]).all(|(w, t)| word_eq(w, t)))
        .map(|i| (i, i + phrase.len()))
}

/// A phrase word against a spoken token: equal, or (words of 4+ letters) a
/// prefix of the token, so inflections match (`book` ~ `booking`).
pub(crate) fn word_eq(word: &str, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    word == token || (word.chars().count() >= 4 && token.starts_with(word))
}

/// The value of a plain decimal token (`"25"` → 25).
pub(crate) fn number(token: &str) -> Option<u32> {
    if token.is_empty() || token.len() > 9 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// The value of an ordinal token (`"5th"` → 5, `"23rd"` → 23).
pub(crate) fn ordinal(token: &str) -> Option<u32> {
    let digits = token
        .strip_suffix("st")
        .or_else(|| token.strip_suffix("nd"))
        .or_else(|| token.strip_suffix("rd"))
        .or_else(|| token.strip_suffix("th"))?;
    number(digits)
}

/// `n` with its English ordinal suffix: 1st, 2nd, 3rd, 4th, 11th, 21st.
pub(crate) fn with_ordinal_suffix(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Lowercases and removes punctuation (module doc rules).
fn clean(raw: &str) -> String {
    let chars: Vec<char> = raw.to_lowercase().chars().collect();
    let mut out = String::with_capacity(chars.len() + 8);
    let is_digit = |i: Option<usize>| i.and_then(|i| chars.get(i)).is_some_and(|c| c.is_ascii_digit());
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1);
        if c.is_alphanumeric() {
            out.push(c);
        } else if matches!(c, '\'' | '’' | 'ʼ' | '`' | '‘') {
            // dropped: "I'd" → "id"
        } else if matches!(c, ':' | '/' | '.') && is_digit(prev) && is_digit(Some(i + 1)) {
            out.push(if c == '.' { ':' } else { c });
        } else if c == '.'
            && prev.and_then(|p| chars.get(p)).is_some_and(|p| p.is_alphabetic())
            && i.checked_sub(2).and_then(|p| chars.get(p)).is_none_or(|p| !p.is_alphanumeric())
        {
            // single-letter abbreviation: "a.m." → "am"
        } else if c == '&' {
            out.push_str(" and ");
        } else {
            out.push(' ');
        }
    }
    out
}

/// Splits `2pm` → `2`, `pm` (but keeps ordinals like `5th`) and pushes the
/// parts onto `out`.
fn split_digits_letters(word: &str, out: &mut Vec<String>) {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_digit: Option<bool> = None;
    for c in word.chars() {
        let d = c.is_ascii_digit() || (matches!(c, ':' | '/') && cur_digit == Some(true));
        if cur_digit.is_some_and(|cd| cd != d) {
            parts.push(std::mem::take(&mut cur));
        }
        cur.push(c);
        cur_digit = Some(d);
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    let mut i = 0;
    while i < parts.len() {
        let is_num = parts[i].starts_with(|c: char| c.is_ascii_digit());
        let next_is_suffix = parts.get(i + 1).is_some_and(|s| matches!(s.as_str(), "st" | "nd" | "rd" | "th"));
        if is_num && next_is_suffix && !parts[i].contains([':', '/']) {
            out.push(format!("{}{}", parts[i], parts[i + 1]));
            i += 2;
        } else {
            out.push(parts[i].clone());
            i += 1;
        }
    }
}

fn unit(w: &str) -> Option<u32> {
    Some(match w {
        "zero" => 0,
        "one" => 1,
        "two" => 2,
        "three" => 3,
        "four" => 4,
        "five" => 5,
        "six" => 6,
        "seven" => 7,
        "eight" => 8,
        "nine" => 9,
        "ten" => 10,
        "eleven" => 11,
        "twelve" => 12,
        "thirteen" => 13,
        "fourteen" => 14,
        "fifteen" => 15,
        "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        _ => return None,
    })
}

fn tens(w: &str) -> Option<u32> {
    Some(match w {
        "twenty" => 20,
        "thirty" => 30,
        "forty" | "fourty" => 40,
        "fifty" => 50,
        "sixty" => 60,
        "seventy" => 70,
        "eighty" => 80,
        "ninety" => 90,
        _ => return None,
    })
}

fn ordinal_word(w: &str) -> Option<u32> {
    Some(match w {
        "first" => 1,
        "second" => 2,
        "third" => 3,
        "fourth" => 4,
        "fifth" => 5,
        "sixth" => 6,
        "seventh" => 7,
        "eighth" => 8,
        "ninth" => 9,
        "tenth" => 10,
        "eleventh" => 11,
        "twelfth" => 12,
        "thirteenth" => 13,
        "fourteenth" => 14,
        "fifteenth" => 15,
        "sixteenth" => 16,
        "seventeenth" => 17,
        "eighteenth" => 18,
        "nineteenth" => 19,
        "twentieth" => 20,
        "thirtieth" => 30,
        _ => return None,
    })
}

/// A number below 100 starting at `toks[i]`: (value, is ordinal, tokens used).
fn below_hundred(toks: &[String], i: usize) -> Option<(u32, bool, usize)> {
    let w = toks.get(i)?.as_str();
    if let Some(t) = tens(w) {
        let next = toks.get(i + 1).map(String::as_str).unwrap_or("");
        if let Some(u) = unit(next).filter(|u| (1..=9).contains(u)) {
            return Some((t + u, false, 2));
        }
        if let Some(o) = ordinal_word(next).filter(|o| (1..=9).contains(o)) {
            return Some((t + o, true, 2));
        }
        return Some((t, false, 1));
    }
    if let Some(u) = unit(w) {
        return Some((u, false, 1));
    }
    ordinal_word(w).map(|o| (o, true, 1))
}

/// Replaces number words with digits (module doc).
fn numbers_to_digits(toks: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let w = toks[i].as_str();
        let next = toks.get(i + 1).map(String::as_str);
        // "[a|one..nine] hundred [and] [below hundred]"
        let hundreds = if next == Some("hundred") {
            if w == "a" { Some(1) } else { unit(w).filter(|u| (1..=9).contains(u)) }
        } else {
            None
        };
        if let Some(h) = hundreds {
            let mut j = i + 2;
            let mut value = h * 100;
            let mut is_ord = false;
            let after_and = if toks.get(j).map(String::as_str) == Some("and") { j + 1 } else { j };
            if let Some((v, o, used)) = below_hundred(toks, after_and) {
                value += v;
                is_ord = o;
                j = after_and + used;
            }
            out.push(if is_ord { with_ordinal_suffix(value) } else { value.to_string() });
            i = j;
            continue;
        }
        if let Some((v, o, used)) = below_hundred(toks, i) {
            out.push(if o { with_ordinal_suffix(v) } else { v.to_string() });
            i += used;
            continue;
        }
        out.push(toks[i].clone());
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        normalize(s).join(" ")
    }

    #[test]
    fn lowercases_and_strips_punctuation() {
        assert_eq!(n("Hi, I'd like to book a Cleaning!"), "hi id like to book a cleaning");
        assert_eq!(n("That's right."), "thats right");
        assert_eq!(n("  ...  "), "");
        assert_eq!(n("check-up"), "check up");
    }

    #[test]
    fn keeps_clock_times_and_splits_meridiem() {
        assert_eq!(n("2:30 p.m."), "2:30 pm");
        assert_eq!(n("10am"), "10 am");
        assert_eq!(n("2:30PM"), "2:30 pm");
        assert_eq!(n("10.30 A.M."), "10:30 am");
        assert_eq!(n("3/5"), "3/5");
        assert_eq!(n("the 5th"), "the 5th");
        assert_eq!(n("o'clock"), "oclock");
    }

    #[test]
    fn number_words_become_digits() {
        assert_eq!(n("two"), "2");
        assert_eq!(n("twenty five"), "25");
        assert_eq!(n("twenty-five"), "25");
        assert_eq!(n("two thirty"), "2 30");
        assert_eq!(n("ten forty five"), "10 45");
        assert_eq!(n("one hundred and five"), "105");
        assert_eq!(n("three hundred twelve"), "312");
        assert_eq!(n("a hundred"), "100");
        assert_eq!(n("fifth"), "5th");
        assert_eq!(n("twenty third"), "23rd");
        assert_eq!(n("thirty-first of march"), "31st of march");
        assert_eq!(n("twelfth"), "12th");
        assert_eq!(n("eleven"), "11");
    }

    #[test]
    fn phrases_match_in_order_with_inflections() {
        let t = normalize("I would like to book an appointment please");
        assert!(phrase_matches(&t, &normalize("book appointment")));
        assert!(!phrase_matches(&t, &normalize("appointment book")));
        assert!(phrase_matches(&normalize("booking for tuesday"), &normalize("book")));
        assert!(phrase_matches(&normalize("what are your hours"), &normalize("hour")));
        assert!(!phrase_matches(&normalize("now"), &normalize("no")));
        assert!(!phrase_matches(&t, &[]));
    }

    #[test]
    fn contiguous_search_skips_masked_tokens() {
        let toks = ["a", "", "check", "up"];
        assert_eq!(find_contiguous(&toks, &normalize("check up")), Some((2, 4)));
        assert_eq!(find_contiguous(&toks, &normalize("a check")), None);
    }

    #[test]
    fn ordinals_and_numbers_parse() {
        assert_eq!(ordinal("5th"), Some(5));
        assert_eq!(ordinal("23rd"), Some(23));
        assert_eq!(ordinal("th"), None);
        assert_eq!(number("12"), Some(12));
        assert_eq!(number("1a"), None);
        assert_eq!(with_ordinal_suffix(1), "1st");
        assert_eq!(with_ordinal_suffix(12), "12th");
        assert_eq!(with_ordinal_suffix(22), "22nd");
        assert_eq!(with_ordinal_suffix(13), "13th");
    }

    #[test]
    fn odd_input_never_panics() {
        for s in ["", "\u{0}", "ß:::/", "1:", ":1", "9999999999999999 hundred", "a.", ".m.", "ʼʼ", "１２"] {
            let _ = normalize(s);
        }
    }
}
