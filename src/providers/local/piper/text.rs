//! Text before phonemization: minimal normalization (what an LLM reply
//! contains that espeak-ng would read badly) and splitting into sentences and
//! clauses at the punctuation Piper keeps as pause symbols.
//!
//! Pure functions, no I/O. Splitting follows what espeak-ng's clause reader
//! does for English closely enough that Piper's rule applies: a clause ends
//! at `, ; :` and a sentence at `. ! ?` when followed by whitespace or the end
//! of the text (so `10:30`, `4.50` and `1,000` stay whole), except after a few
//! common abbreviations (`Mr.`, `Dr.`, `e.g.` …).

/// A clause: its text without the terminator, and the terminator (one of
/// `, ; : . ! ?`) or `None` when the text ended without punctuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    /// Clause text, trimmed, without its terminating punctuation.
    pub(crate) text: String,
    /// The punctuation that ended it.
    pub(crate) terminator: Option<char>,
}

/// Abbreviations whose period does not end a sentence (lowercase, no period).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "etc", "e.g", "i.e", "no", "approx", "dept", "inc",
    "ltd", "co", "mt", "ft", "ave", "apt",
];

/// Normalizes `text` for espeak-ng: typographic quotes and dashes to ASCII
/// (dashes become clause commas), markdown emphasis (`**`, `_`, `` ` ``, `~`,
/// heading `#`) removed, a lone `*` / `#` read as "star" / "pound" (keypad
/// keys), `&` as "and", `$4.50` as "4 dollars and 50 cents", emoji and
/// control characters dropped. Digits are kept: espeak-ng speaks them.
pub(crate) fn normalize(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let prev = if i > 0 { Some(chars[i - 1]) } else { None };
        let next = chars.get(i + 1).copied();
        match c {
            '\u{2018}' | '\u{2019}' | '\u{02BC}' | '`' if is_word(prev) && is_word(next) => out.push('\''),
            '\u{2018}' | '\u{2019}' | '\u{201C}' | '\u{201D}' | '`' | '~' | '_' => out.push(' '),
            '\u{2014}' | '\u{2013}' => out.push_str(", "),
            '-' if next == Some('-') => {
                while chars.get(i + 1) == Some(&'-') {
                    i += 1;
                }
                out.push_str(", ");
            }
            '&' => out.push_str(" and "),
            '*' | '#' => {
                let mut j = i;
                while chars.get(j + 1) == Some(&c) {
                    j += 1;
                }
                let before = prev.is_none_or(|p| !p.is_alphanumeric());
                let after = chars.get(j + 1).is_none_or(|n| !n.is_alphanumeric());
                if j == i && before && after && !(c == '#' && at_line_start(&out)) {
                    out.push_str(if c == '*' { " star " } else { " pound " });
                } else {
                    out.push(' ');
                }
                i = j;
            }
            '$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                i = dollars(&chars, i + 1, &mut out);
                continue;
            }
            c if is_emoji(c) => out.push(' '),
            c if c.is_control() => out.push(if c == '\n' { '\n' } else { ' ' }),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Splits normalized text into sentences at `. ! ?` (runs of them, e.g. `...`
/// or `?!`) followed by whitespace or the end, and at blank lines. Each
/// sentence keeps its punctuation; empty ones are dropped.
pub(crate) fn split_sentences(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut sentences = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' && chars.get(i + 1) == Some(&'\n') {
            push_trimmed(&mut sentences, &mut current);
            i += 1;
            continue;
        }
        current.push(if c == '\n' { ' ' } else { c });
        if matches!(c, '.' | '!' | '?') {
            while let Some(&p) = chars.get(i + 1).filter(|p| matches!(p, '.' | '!' | '?')) {
                current.push(p);
                i += 1;
            }
            let ends = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            if ends && !(c == '.' && ends_with_abbreviation(&current)) {
                push_trimmed(&mut sentences, &mut current);
            }
        }
        i += 1;
    }
    push_trimmed(&mut sentences, &mut current);
    sentences
}

/// Splits one sentence into clauses at `, ; :` and the final `. ! ?`, each
/// followed by whitespace or the end (see the module doc). A run of
/// punctuation (`...`, `?!`) counts as its first character.
pub(crate) fn split_clauses(sentence: &str) -> Vec<Clause> {
    let chars: Vec<char> = sentence.chars().collect();
    let mut clauses = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, ',' | ';' | ':' | '.' | '!' | '?') {
            let mut j = i;
            while chars.get(j + 1).is_some_and(|p| matches!(p, ',' | ';' | ':' | '.' | '!' | '?')) {
                j += 1;
            }
            let ends = chars.get(j + 1).is_none_or(|n| n.is_whitespace());
            let abbreviation = c == '.' && j == i && ends_with_abbreviation(&format!("{current}."));
            if ends && !abbreviation {
                let text = current.trim().to_string();
                if !text.is_empty() || !clauses.is_empty() {
                    clauses.push(Clause { text, terminator: Some(c) });
                }
                current.clear();
                i = j + 1;
                continue;
            }
        }
        current.push(c);
        i += 1;
    }
    let text = current.trim().to_string();
    if !text.is_empty() {
        clauses.push(Clause { text, terminator: None });
    }
    clauses
}

/// True if the text has something espeak-ng can speak (a letter or digit).
pub(crate) fn is_speakable(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// Reads `$` amounts starting at the digits at `start`; writes
/// "N dollars[ and C cents]" and returns the index after the amount.
fn dollars(chars: &[char], start: usize, out: &mut String) -> usize {
    let mut i = start;
    let mut whole = String::new();
    while let Some(&c) = chars.get(i) {
        if c.is_ascii_digit() {
            whole.push(c);
        } else if c == ',' && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
            // Thousands separator: espeak-ng reads "1,000" as one number.
            whole.push(c);
        } else {
            break;
        }
        i += 1;
    }
    let mut cents = String::new();
    if chars.get(i) == Some(&'.') && chars.get(i + 1).is_some_and(char::is_ascii_digit) {
        let mut j = i + 1;
        while let Some(&c) = chars.get(j).filter(|c| c.is_ascii_digit()) {
            cents.push(c);
            j += 1;
        }
        i = j;
    }
    let unit = if whole == "1" { "dollar" } else { "dollars" };
    out.push_str(&format!("{whole} {unit}"));
    let cents = match cents.len() {
        0 => 0,
        1 => cents.parse::<u32>().unwrap_or(0) * 10,
        _ => cents[..2].parse::<u32>().unwrap_or(0),
    };
    if cents > 0 {
        let unit = if cents == 1 { "cent" } else { "cents" };
        out.push_str(&format!(" and {cents} {unit}"));
    }
    i
}

/// True for a letter or digit (apostrophes inside words).
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(char::is_alphanumeric)
}

/// True if only whitespace follows the last newline of `out` (a markdown
/// heading `#` at the start of a line).
fn at_line_start(out: &str) -> bool {
    out.rsplit('\n').next().is_none_or(|line| line.trim().is_empty())
}

/// True if `text` (ending with a period) ends with a known abbreviation or a
/// single-letter initial.
fn ends_with_abbreviation(text: &str) -> bool {
    let Some(stem) = text.strip_suffix('.') else {
        return false;
    };
    let word = stem.rsplit(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
    let lower = word.to_lowercase();
    ABBREVIATIONS.contains(&lower.as_str())
        || (word.chars().count() == 1 && word.chars().all(|c| c.is_uppercase()))
}

/// Pushes `current` (trimmed) if it has content and clears it.
fn push_trimmed(sentences: &mut Vec<String>, current: &mut String) {
    let s = current.trim();
    if !s.is_empty() {
        sentences.push(s.to_string());
    }
    current.clear();
}

/// Emoji, pictographs, dingbats, variation selectors, joiners and tag
/// characters: nothing a caller should hear read out ("grinning face").
fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0xFE00..=0xFE0F | 0x200D | 0x20E3 | 0xE0000..=0xE007F
        | 0x2190..=0x21FF | 0x2300..=0x23FF | 0x25A0..=0x25FF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(text: &str, terminator: Option<char>) -> Clause {
        Clause { text: text.to_string(), terminator }
    }

    #[test]
    fn clauses_end_at_punctuation_followed_by_space() {
        assert_eq!(
            split_clauses("Hello, it is 10:30; costs 4.50: ok."),
            vec![
                clause("Hello", Some(',')),
                clause("it is 10:30", Some(';')),
                clause("costs 4.50", Some(':')),
                clause("ok", Some('.'))
            ]
        );
        assert_eq!(split_clauses("no punctuation"), vec![clause("no punctuation", None)]);
        assert_eq!(split_clauses("Wait... what?!"), vec![clause("Wait", Some('.')), clause("what", Some('?'))]);
        assert_eq!(split_clauses("1,000 people"), vec![clause("1,000 people", None)]);
        assert_eq!(split_clauses("Call Mr. Smith."), vec![clause("Call Mr. Smith", Some('.'))]);
        assert!(split_clauses("").is_empty());
        assert!(split_clauses("   ").is_empty());
        assert!(split_clauses("...").is_empty());
    }

    #[test]
    fn sentences_end_at_terminal_punctuation() {
        assert_eq!(
            split_sentences("Hi. How are you? Fine!! It costs 4.50 now.\n\nNew paragraph"),
            ["Hi.", "How are you?", "Fine!!", "It costs 4.50 now.", "New paragraph"]
        );
        assert_eq!(split_sentences("Dr. Who is here. Ask e.g. him."), ["Dr. Who is here.", "Ask e.g. him."]);
        assert_eq!(split_sentences("J. R. Smith called."), ["J. R. Smith called."]);
        assert_eq!(split_sentences("line one\nline two"), ["line one line two"]);
        assert!(split_sentences("").is_empty());
        assert!(split_sentences(" \n\n ").is_empty());
    }

    #[test]
    fn normalizes_symbols_llms_emit() {
        assert_eq!(normalize("**Great** news").split_whitespace().collect::<Vec<_>>(), ["Great", "news"]);
        assert_eq!(normalize("R&D").trim(), "R and D");
        assert_eq!(normalize("It costs $4.50."), "It costs 4 dollars and 50 cents.");
        assert_eq!(normalize("$1 or $1,000 or $2.5"), "1 dollar or 1,000 dollars or 2 dollars and 50 cents");
        assert_eq!(normalize("press * or #").split_whitespace().collect::<Vec<_>>(), ["press", "star", "or", "pound"]);
        assert_eq!(normalize("# Heading").trim(), "Heading");
        assert_eq!(normalize("it\u{2019}s \u{201C}fine\u{201D}"), "it's  fine ");
        assert_eq!(normalize("yes\u{2014}no"), "yes, no");
        assert_eq!(normalize("ok -- go"), "ok ,  go");
        assert_eq!(normalize("hi \u{1F600}\u{1F44D}\u{1F3FD}!").trim_end_matches('!').trim(), "hi");
        assert_eq!(normalize("10:30 3"), "10:30 3");
        assert!(!is_speakable(&normalize("\u{1F600} ?! ...")));
        assert!(is_speakable(&normalize("3")));
    }
}
