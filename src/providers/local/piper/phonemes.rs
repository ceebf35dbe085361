//! Text → IPA phonemes (espeak-ng) → Piper phoneme ids.
//!
//! Follows Piper (`piper1-gpl`, `phonemize_espeak.py`, `phoneme_ids.py`):
//! each clause is phonemized by espeak-ng in IPA mode with stress (`ˈ ˌ`) and
//! length (`ː`) marks and a space between words; language-switch flags such
//! as `(fr)` are removed; the clause's punctuation is appended as a phoneme,
//! followed by a space when it is `, : ;` (not a sentence boundary). The
//! string is decomposed into codepoints (NFD, so `ç` becomes `c` + U+0327)
//! and each is mapped through the voice's `phoneme_id_map`; the sequence is
//! `BOS PAD (id PAD)* EOS`, i.e. `^ _ p1 _ p2 _ … pn _ $`. Codepoints
//! missing from the map are skipped (and counted).
//!
//! espeak-ng runs as the Debian `espeak-ng` command (`-q --ipa -v VOICE`,
//! text on stdin), one process per clause, all clauses of a sentence at once.

use super::PiperError;
use super::text::{Clause, split_clauses};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

/// The espeak-ng command.
const ESPEAK_PROGRAM: &str = "espeak-ng";
/// Longest text given to one espeak-ng process, bytes. Keeps its output
/// well below a pipe buffer (stdin is written before stdout is read).
const MAX_CHUNK_BYTES: usize = 4000;
/// Padding symbol, interleaved after every phoneme id.
pub(crate) const PAD: char = '_';
/// Beginning-of-sentence symbol.
pub(crate) const BOS: char = '^';
/// End-of-sentence symbol.
pub(crate) const EOS: char = '$';

/// The voice's `phoneme_id_map`: one codepoint → its ids.
#[derive(Debug, Clone)]
pub(crate) struct PhonemeIdMap {
    /// Codepoint → ids (one id each in every Piper voice so far).
    map: HashMap<char, Vec<i64>>,
}

/// espeak-ng as a command.
#[derive(Debug, Clone)]
pub(crate) struct Espeak {
    /// espeak-ng voice (`en-us`).
    voice: String,
}

impl PhonemeIdMap {
    /// Builds the map from the config's `phoneme_id_map`. Keys longer than one
    /// codepoint (vowel clusters of other phonemizers) are ignored. Errors:
    /// [`PiperError::Config`] if `_`, `^` or `$` is missing.
    pub(crate) fn new(raw: &HashMap<String, Vec<i64>>) -> Result<PhonemeIdMap, PiperError> {
        let mut map = HashMap::with_capacity(raw.len());
        for (key, ids) in raw {
            let mut chars = key.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                map.insert(c, ids.clone());
            }
        }
        for symbol in [PAD, BOS, EOS] {
            if !map.contains_key(&symbol) {
                return Err(PiperError::Config(format!("phoneme_id_map has no {symbol:?}")));
            }
        }
        Ok(PhonemeIdMap { map })
    }

    /// Maps a phoneme string to model input ids: `^ _ (p _)* $`. Returns the
    /// ids and how many codepoints were skipped because the map lacks them.
    pub(crate) fn ids(&self, phonemes: &str) -> (Vec<i64>, usize) {
        let pad = self.symbol(PAD);
        let mut ids = Vec::with_capacity(2 * phonemes.len() + 3);
        ids.extend_from_slice(self.symbol(BOS));
        ids.extend_from_slice(pad);
        let mut skipped = 0;
        for c in phonemes.chars().flat_map(decompose) {
            match self.map.get(&c) {
                Some(id) => {
                    ids.extend_from_slice(id);
                    ids.extend_from_slice(pad);
                }
                None => skipped += 1,
            }
        }
        ids.extend_from_slice(self.symbol(EOS));
        (ids, skipped)
    }

    /// Ids of a symbol checked present in [`PhonemeIdMap::new`].
    fn symbol(&self, c: char) -> &[i64] {
        self.map.get(&c).map(Vec::as_slice).unwrap_or(&[])
    }
}

impl Espeak {
    /// espeak-ng with `voice` (the config's `espeak.voice`).
    pub(crate) fn new(voice: &str) -> Espeak {
        Espeak { voice: voice.to_string() }
    }

    /// Checks that espeak-ng runs and knows the voice. Errors:
    /// [`PiperError::Espeak`] saying what to install.
    pub(crate) fn check(&self) -> Result<(), PiperError> {
        let ipa = self.ipa(&["a"])?;
        if ipa.first().is_none_or(|s| s.is_empty()) {
            return Err(PiperError::Espeak(format!("espeak-ng voice {:?} produced no phonemes", self.voice)));
        }
        Ok(())
    }

    /// The phonemes of one sentence: each clause's IPA plus its punctuation
    /// (and a space after `, : ;`), as Piper builds them. Empty if nothing
    /// in the sentence is speakable.
    pub(crate) fn sentence_phonemes(&self, sentence: &str) -> Result<String, PiperError> {
        let clauses = split_clauses(sentence);
        let texts: Vec<&str> = clauses.iter().map(|c| c.text.as_str()).collect();
        let ipa = self.ipa(&texts)?;
        Ok(join_clauses(&clauses, &ipa))
    }

    /// IPA of each text (words separated by spaces; espeak-ng's own clause
    /// breaks inside a text become spaces too). Runs one espeak-ng process per
    /// text (per chunk of [`MAX_CHUNK_BYTES`]), all concurrently.
    pub(crate) fn ipa(&self, texts: &[&str]) -> Result<Vec<String>, PiperError> {
        let mut children = Vec::new();
        for (index, text) in texts.iter().enumerate() {
            for chunk in chunks(text, MAX_CHUNK_BYTES) {
                if chunk.trim().is_empty() {
                    continue;
                }
                children.push((index, self.spawn(chunk)?));
            }
        }
        let mut out = vec![String::new(); texts.len()];
        for (index, child) in children {
            let output = child.wait_with_output().map_err(|e| PiperError::Espeak(e.to_string()))?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(PiperError::Espeak(format!("espeak-ng failed ({}): {}", output.status, stderr.trim())));
            }
            let ipa = clean_ipa(&String::from_utf8_lossy(&output.stdout));
            if !ipa.is_empty() {
                if !out[index].is_empty() {
                    out[index].push(' ');
                }
                out[index].push_str(&ipa);
            }
        }
        Ok(out)
    }

    /// Starts espeak-ng on `text` (written to its stdin, which is then closed).
    fn spawn(&self, text: &str) -> Result<std::process::Child, PiperError> {
        let mut child = Command::new(ESPEAK_PROGRAM)
            .args(["-q", "--ipa", "-b", "1", "-v", &self.voice, "--stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PiperError::Espeak(format!("cannot run {ESPEAK_PROGRAM} ({e}); install the espeak-ng package")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error means espeak-ng exited early; its status says why.
            let _ = stdin.write_all(text.as_bytes());
        }
        Ok(child)
    }
}

/// Joins clause phonemes Piper's way: IPA + terminator (+ space after
/// `, : ;`). Clauses with no phonemes keep their punctuation only if some
/// phonemes precede them; a sentence with no phonemes at all is empty.
pub(crate) fn join_clauses(clauses: &[Clause], ipa: &[String]) -> String {
    let mut phonemes = String::new();
    for (clause, ipa) in clauses.iter().zip(ipa) {
        phonemes.push_str(ipa);
        if phonemes.is_empty() {
            continue;
        }
        if let Some(t) = clause.terminator {
            if ipa.is_empty() && phonemes.ends_with(' ') {
                // A clause that spoke nothing: don't stack pauses.
                continue;
            }
            phonemes.push(t);
            if matches!(t, ',' | ':' | ';') {
                phonemes.push(' ');
            }
        }
    }
    phonemes
}

/// espeak-ng's output lines → one line: language-switch flags `(xx)`
/// removed, whitespace collapsed to single spaces.
fn clean_ipa(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut depth = 0usize;
    for c in raw.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Splits `text` into pieces of at most `max` bytes at whitespace (at a char
/// boundary if a single word is longer).
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let split = rest[..cut].rfind(char::is_whitespace).filter(|&i| i > 0).unwrap_or(cut);
        pieces.push(&rest[..split]);
        rest = &rest[split..];
    }
    pieces.push(rest);
    pieces
}

/// Canonical decomposition (NFD) of the precomposed letters espeak-ng's IPA
/// can contain; every other codepoint is already in NFD form.
fn decompose(c: char) -> impl Iterator<Item = char> {
    let pair = match c {
        'ç' => Some(('c', '\u{327}')),
        'ã' => Some(('a', '\u{303}')),
        'ẽ' => Some(('e', '\u{303}')),
        'ĩ' => Some(('i', '\u{303}')),
        'õ' => Some(('o', '\u{303}')),
        'ũ' => Some(('u', '\u{303}')),
        'ñ' => Some(('n', '\u{303}')),
        'ỹ' => Some(('y', '\u{303}')),
        _ => None,
    };
    match pair {
        Some((a, b)) => [Some(a), Some(b)].into_iter().flatten(),
        None => [Some(c), None].into_iter().flatten(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> PhonemeIdMap {
        let raw: HashMap<String, Vec<i64>> = [
            ("_", 0),
            ("^", 1),
            ("$", 2),
            (" ", 3),
            (",", 8),
            (".", 10),
            ("?", 13),
            ("c", 16),
            ("h", 20),
            ("l", 24),
            ("ə", 59),
            ("ˈ", 120),
            ("o", 27),
            ("ʊ", 100),
            ("̧", 140),
            ("aɪ", 161),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), vec![v]))
        .collect();
        PhonemeIdMap::new(&raw).unwrap()
    }

    #[test]
    fn ids_are_bos_pad_interleaved_eos() {
        let (ids, skipped) = map().ids("həlˈoʊ.");
        assert_eq!(ids, [1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 10, 0, 2]);
        assert_eq!(skipped, 0);
        assert_eq!(map().ids("").0, [1, 0, 2]);
    }

    #[test]
    fn unknown_codepoints_are_skipped_and_counted() {
        let (ids, skipped) = map().ids("h☃l");
        assert_eq!(ids, [1, 0, 20, 0, 24, 0, 2]);
        assert_eq!(skipped, 1);
    }

    #[test]
    fn precomposed_letters_are_decomposed() {
        assert_eq!(map().ids("ç").0, [1, 0, 16, 0, 140, 0, 2]);
    }

    #[test]
    fn map_without_pad_is_a_config_error() {
        let raw: HashMap<String, Vec<i64>> = [("^".to_string(), vec![1]), ("$".to_string(), vec![2])].into();
        assert!(matches!(PhonemeIdMap::new(&raw), Err(PiperError::Config(_))));
    }

    #[test]
    fn clauses_join_with_punctuation_like_piper() {
        let clauses = split_clauses("Hello, world. ");
        let ipa = ["həlˈoʊ".to_string(), "wˈɜːld".to_string()];
        assert_eq!(join_clauses(&clauses, &ipa), "həlˈoʊ, wˈɜːld.");
        let clauses = split_clauses("a: b");
        assert_eq!(join_clauses(&clauses, &["ˈeɪ".into(), "bˈiː".into()]), "ˈeɪ: bˈiː");
        // Nothing spoken: nothing at all, not a lone period.
        let clauses = split_clauses("..., ?");
        assert_eq!(join_clauses(&clauses, &vec![String::new(); clauses.len()]), "");
    }

    #[test]
    fn language_flags_and_line_breaks_are_removed() {
        assert_eq!(clean_ipa("kæfˈeɪ (fr)ʃɛ(en) nˈuː\nsmˈɪθ\n"), "kæfˈeɪ ʃɛ nˈuː smˈɪθ");
    }

    #[test]
    fn long_text_is_chunked_at_whitespace() {
        let text = "word ".repeat(2000);
        let pieces = chunks(&text, 4000);
        assert!(pieces.iter().all(|p| p.len() <= 4000));
        assert_eq!(pieces.concat(), text);
        assert_eq!(chunks("ééé", 3), ["é", "é", "é"]);
    }

    #[test]
    fn hello_world_matches_the_espeak_ng_command() {
        let espeak = Espeak::new("en-us");
        let ours = espeak.sentence_phonemes("hello world").expect("espeak-ng installed");
        let cli = Command::new("espeak-ng")
            .args(["-q", "--ipa", "-v", "en-us", "hello world"])
            .output()
            .expect("espeak-ng installed");
        let cli = String::from_utf8(cli.stdout).unwrap();
        let strip = |s: &str| s.split_whitespace().collect::<String>();
        assert_eq!(strip(&ours), strip(&cli));
        assert_eq!(ours, "həlˈoʊ wˈɜːld");
    }

    #[test]
    fn sentence_phonemes_keep_stress_length_and_pauses() {
        let espeak = Espeak::new("en-us");
        let p = espeak.sentence_phonemes("Hello, thank you for calling.").unwrap();
        assert_eq!(p, "həlˈoʊ, θˈæŋk juː fɔːɹ kˈɔːlɪŋ.");
        // Digits and times are spoken, not dropped.
        let p = espeak.sentence_phonemes("It is 10:30").unwrap();
        assert!(p.contains("tˈɛn") && p.contains("θˈɜːɾi"), "{p}");
        assert_eq!(espeak.sentence_phonemes("...").unwrap(), "");
        assert_eq!(espeak.sentence_phonemes("").unwrap(), "");
    }
}
