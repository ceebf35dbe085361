//! Reply templates: text with slot references, checked when the agent file
//! is loaded and rendered per turn.
//!
//! Syntax: `{slot}` says the slot's value naturally (same as
//! `{slot|spoken}`: `Tuesday, December 1st`, `2:30 PM`); `{slot|raw}` gives
//! the normalized value (`2026-12-01`, `14:30`); `{{` and `}}` are literal
//! braces. An unknown slot or filter, an empty `{}` or an unbalanced brace
//! is a load error. A slot not collected yet renders as nothing, and runs of
//! whitespace collapse to one space.

/// How a slot value is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filter {
    /// Natural speech (the default).
    Spoken,
    /// The normalized value as stored.
    Raw,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot { index: usize, filter: Filter },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `src`; `slot` maps a slot name to its index. Errors are
    /// messages naming the offending reference.
    pub(crate) fn parse(src: &str, slot: impl Fn(&str) -> Option<usize>) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((pos, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '}' => return Err(format!("unmatched `}}` at byte {pos} (write `}}}}` for a literal brace)")),
                '{' => {
                    let mut inner = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        inner.push(c);
                    }
                    if !closed {
                        return Err(format!("unclosed `{{` at byte {pos} (write `{{{{` for a literal brace)"));
                    }
                    let (name, filter) = match inner.split_once('|') {
                        Some((n, f)) => (n.trim(), Some(f.trim())),
                        None => (inner.trim(), None),
                    };
                    if name.is_empty() {
                        return Err(format!("empty slot reference `{{{inner}}}`"));
                    }
                    let Some(index) = slot(name) else {
                        return Err(format!("unknown slot `{name}` in `{{{inner}}}`"));
                    };
                    let filter = match filter {
                        None | Some("spoken") => Filter::Spoken,
                        Some("raw") => Filter::Raw,
                        Some(other) => {
                            return Err(format!("unknown filter `{other}` in `{{{inner}}}` (known: spoken, raw)"));
                        }
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Slot { index, filter });
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// Renders with `value(slot index, filter)`; missing values render empty.
    pub(crate) fn render(&self, value: impl Fn(usize, Filter) -> Option<String>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Slot { index, filter } => {
                    if let Some(v) = value(*index, *filter) {
                        out.push_str(&v);
                    }
                }
            }
        }
        let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
        collapsed.replace(" ,", ",").replace(" .", ".")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(name: &str) -> Option<usize> {
        ["date", "time"].iter().position(|s| *s == name)
    }

    fn render(t: &Template) -> String {
        t.render(|i, f| match (i, f) {
            (0, Filter::Spoken) => Some("Tuesday, December 1st".into()),
            (0, Filter::Raw) => Some("2026-12-01".into()),
            _ => None,
        })
    }

    #[test]
    fn renders_slots_with_filters() {
        let t = Template::parse("See you {date} ({date|raw}).", slots).unwrap();
        assert_eq!(render(&t), "See you Tuesday, December 1st (2026-12-01).");
        let t = Template::parse("On { date | spoken } at {time}.", slots).unwrap();
        assert_eq!(render(&t), "On Tuesday, December 1st at.");
        let t = Template::parse("Braces {{like this}}", slots).unwrap();
        assert_eq!(render(&t), "Braces {like this}");
    }

    #[test]
    fn rejects_bad_references() {
        assert!(Template::parse("{dat}", slots).unwrap_err().contains("unknown slot `dat`"));
        assert!(Template::parse("{date|loud}", slots).unwrap_err().contains("unknown filter `loud`"));
        assert!(Template::parse("{}", slots).unwrap_err().contains("empty"));
        assert!(Template::parse("oops {date", slots).unwrap_err().contains("unclosed"));
        assert!(Template::parse("oops }", slots).unwrap_err().contains("unmatched"));
    }
}
