//! Sentence aggregation of streamed agent text for TTS.
//!
//! Owns the buffer between the LLM's token stream and the TTS: text comes in
//! arbitrary pieces (tokens, partial words), whole sentences come out as soon
//! as their end is certain, so the first sentence is synthesized while the
//! rest of the reply still streams.
//!
//! # Where a sentence ends
//! * after `.`, `!`, `?`, `;` or `:` (a run of them, e.g. `?!` or `...`,
//!   and any closing quotes or brackets right after) **followed by
//!   whitespace**. The whitespace is what makes the split certain, so a
//!   terminator at the end of the buffer waits for the next piece. This keeps
//!   decimals (`3.5`), times (`10.30`) and inner dots (`e.g`) whole.
//! * at a newline (the newline is dropped).
//! * not after the abbreviations `Dr.`, `Mr.`, `Mrs.`, `Ms.`, `St.`, `Jr.`,
//!   `Sr.`, `Prof.`, `vs.`, `e.g.`, `i.e.` (case-insensitive), nor after a
//!   dotted initialism such as `U.S.` or `a.m.` (single letters between
//!   dots). A real sentence end after one of them is found later (at the
//!   next terminator or at [`SentenceAggregator::flush`]): joining two
//!   sentences costs less than a voice pausing after "Dr.".
//! * a long sentence without a terminator is split after a comma followed by
//!   whitespace once the sentence has at least [`LONG_SENTENCE_CHARS`]
//!   characters before the comma.
//!
//! Sentences are returned trimmed, with their punctuation; empty ones are
//! dropped. The result does not depend on how the text was cut into pieces.
//! Works on `char`s, so any UTF-8 input is fine.

/// Characters (not bytes) a sentence must have before a comma may split it.
pub const LONG_SENTENCE_CHARS: usize = 120;

/// Sentence terminators.
const TERMINATORS: &[char] = &['.', '!', '?', ';', ':'];
/// Closing characters that stay with the sentence they end.
const CLOSERS: &[char] = &['"', '\'', ')', ']', '}', '\u{201d}', '\u{2019}', '\u{bb}'];
/// Opening characters ignored when reading the word before a dot.
const OPENERS: &[char] = &['"', '\'', '(', '[', '{', '\u{201c}', '\u{2018}', '\u{ab}'];
/// Words (lowercase, without their final dot) after which a dot does not end
/// a sentence.
const ABBREVIATIONS: &[&str] = &["dr", "mr", "mrs", "ms", "st", "jr", "sr", "prof", "vs", "e.g", "i.e"];

/// Collects streamed text and yields whole sentences (keeping their
/// punctuation), so the first sentence is synthesized while the rest streams.
#[derive(Debug, Default, Clone)]
pub struct SentenceAggregator {
    /// Text not yet returned.
    buf: String,
    /// Byte offset in `buf` before which no split point exists; scanning
    /// resumes here (at a terminator or comma waiting for its next char).
    scan: usize,
}

impl SentenceAggregator {
    /// Empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds text; returns the sentences it completed, in order.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        while let Some(end) = self.next_split() {
            let sentence = self.buf[..end].trim();
            if !sentence.is_empty() {
                out.push(sentence.to_string());
            }
            self.buf.drain(..end);
            self.scan = 0;
        }
        out
    }

    /// Returns what is left (end of the reply), trimmed; `None` if only
    /// whitespace is left. The aggregator is empty afterwards.
    pub fn flush(&mut self) -> Option<String> {
        let rest = self.buf.trim().to_string();
        self.buf.clear();
        self.scan = 0;
        (!rest.is_empty()).then_some(rest)
    }

    /// Text buffered and not yet returned.
    pub fn pending(&self) -> &str {
        &self.buf
    }

    /// The byte offset just past the next sentence, or `None` if no sentence
    /// end is certain yet (then `scan` is where to look again).
    fn next_split(&mut self) -> Option<usize> {
        let buf = self.buf.as_str();
        let start = self.scan;
        let mut chars = buf[start..].char_indices().map(|(i, c)| (i + start, c)).peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\n' || c == '\r' {
                return Some(i + c.len_utf8());
            }
            if TERMINATORS.contains(&c) {
                // The run of terminators and closers after this one.
                let mut end = i + c.len_utf8();
                let mut single_dot = c == '.';
                while let Some(&(j, d)) = chars.peek() {
                    if TERMINATORS.contains(&d) || CLOSERS.contains(&d) {
                        single_dot &= !TERMINATORS.contains(&d);
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let Some(&(_, next)) = chars.peek() else {
                    self.scan = i;
                    return None;
                };
                if next.is_whitespace() && !(single_dot && is_abbreviation(&buf[..i])) {
                    return Some(end);
                }
                continue;
            }
            if c == ',' && buf[..i].trim_start().chars().count() >= LONG_SENTENCE_CHARS {
                let Some(&(_, next)) = chars.peek() else {
                    self.scan = i;
                    return None;
                };
                if next.is_whitespace() {
                    return Some(i + 1);
                }
            }
        }
        self.scan = buf.len();
        None
    }
}

/// True if the word ending `before` (the text up to a dot) is an
/// abbreviation, so the dot does not end a sentence.
fn is_abbreviation(before: &str) -> bool {
    let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
    let word = word.trim_start_matches(OPENERS);
    if word.is_empty() {
        return false;
    }
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    // Dotted initialism: "U.S", "a.m" (single letters joined by dots).
    word.contains('.') && word.split('.').all(|part| {
        let mut cs = part.chars();
        matches!((cs.next(), cs.next()), (Some(c), None) if c.is_alphabetic())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole text in one push, then flush.
    fn split(text: &str) -> Vec<String> {
        let mut agg = SentenceAggregator::new();
        let mut out = agg.push(text);
        out.extend(agg.flush());
        out
    }

    /// Same text pushed one char at a time.
    fn split_chars(text: &str) -> Vec<String> {
        let mut agg = SentenceAggregator::new();
        let mut out = Vec::new();
        for c in text.chars() {
            out.extend(agg.push(c.encode_utf8(&mut [0; 4])));
        }
        out.extend(agg.flush());
        out
    }

    #[test]
    fn splits_on_terminators_followed_by_whitespace() {
        assert_eq!(
            split("Hello there! How are you? Fine. Two things; first: this. Done"),
            ["Hello there!", "How are you?", "Fine.", "Two things;", "first:", "this.", "Done"]
        );
    }

    #[test]
    fn waits_for_whitespace_after_a_terminator() {
        let mut agg = SentenceAggregator::new();
        assert!(agg.push("It costs 3.").is_empty());
        assert!(agg.push("5 dollars.").is_empty());
        assert_eq!(agg.push(" Okay"), ["It costs 3.5 dollars."]);
        assert_eq!(agg.pending(), " Okay");
        assert_eq!(agg.flush().as_deref(), Some("Okay"));
        assert_eq!(agg.flush(), None);
    }

    #[test]
    fn decimals_times_and_abbreviations_stay_whole() {
        assert_eq!(
            split("Dr. Smith sees you at 10.30 tomorrow. Mr. and Mrs. Jones paid 3.5 percent. Main St. is closed."),
            ["Dr. Smith sees you at 10.30 tomorrow.", "Mr. and Mrs. Jones paid 3.5 percent.", "Main St. is closed."]
        );
        assert_eq!(
            split("Bring an ID, e.g. a passport. I.e. anything official. In the U.S. it works."),
            ["Bring an ID, e.g. a passport.", "I.e. anything official.", "In the U.S. it works."]
        );
        assert_eq!(split("(Dr. Who) is on. Yes."), ["(Dr. Who) is on.", "Yes."]);
    }

    #[test]
    fn runs_of_terminators_and_closing_quotes_stay_with_the_sentence() {
        assert_eq!(
            split("Really?! Wait... He said \"stop.\" Then (he left.) Ok"),
            ["Really?!", "Wait...", "He said \"stop.\"", "Then (he left.)", "Ok"]
        );
    }

    #[test]
    fn newlines_split_and_are_dropped() {
        assert_eq!(split("Line one\nLine two.\n\n- item\r\nend"), ["Line one", "Line two.", "- item", "end"]);
    }

    #[test]
    fn long_sentences_split_at_a_comma_after_120_chars() {
        let head = "word ".repeat(25); // 125 chars
        let text = format!("short, not split here, {head}and now, a comma after the limit, and more");
        let out = split(&text);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].ends_with("and now,"), "{out:?}");
        assert!(out[0].chars().count() > LONG_SENTENCE_CHARS);
        // The rest is a new, short sentence: its comma does not split.
        assert_eq!(out[1], "a comma after the limit, and more");
        // A comma without whitespace (a number) does not split.
        let text = format!("{head}1,000 and more");
        assert_eq!(split(&text).len(), 1);
        // Short sentences keep their commas.
        assert_eq!(split("Yes, of course, sir."), ["Yes, of course, sir."]);
    }

    #[test]
    fn piece_boundaries_do_not_matter() {
        let texts = [
            "Dr. Smith sees you at 10.30 tomorrow. Mr. and Mrs. Jones paid 3.5 percent. Main St. is closed.",
            "Really?! Wait... He said \"stop.\" Then (he left.) Ok\nNext line: done; e.g. this.",
            "Ünïcödé — ça va? Très bien! 日本語。 Fin.",
            &format!("{}and now, a comma after the limit, and more", "wörd ".repeat(30)),
        ];
        for text in texts {
            let whole = split(text);
            assert_eq!(split_chars(text), whole, "{text}");
            for (cut, _) in text.char_indices() {
                let mut agg = SentenceAggregator::new();
                let mut out = agg.push(&text[..cut]);
                out.extend(agg.push(&text[cut..]));
                out.extend(agg.flush());
                assert_eq!(out, whole, "cut at {cut} of {text}");
            }
        }
    }

    #[test]
    fn empty_and_whitespace_input() {
        let mut agg = SentenceAggregator::new();
        assert!(agg.push("").is_empty());
        assert_eq!(agg.push("  \n\n . "), ["."]);
        assert_eq!(agg.flush(), None);
        assert_eq!(split("   "), Vec::<String>::new());
        assert_eq!(split(". ! ?"), [".", "!", "?"]);
    }
}
