//! Slot types: extracting typed values from a normalized utterance and
//! speaking them back.
//!
//! Every extractor reads the tokens of [`super::text::normalize`], where
//! tokens already consumed by another slot of the same turn are blanked
//! (`""`), and returns the normalized value with the span it used. Each runs
//! in one of two modes:
//!
//! - **strict** (the slot was not just asked for): only unmistakable forms,
//!   e.g. `at 2`, `2:30`, `2 pm`, `tomorrow`, `my name is Anna`;
//! - **loose** (the agent just asked for this slot): also bare answers, e.g.
//!   `2` for a time, `the 5th` or `5` for a date, `Anna Smith` for a name,
//!   `morning` for a time.
//!
//! Normalized values: `date` → ISO `YYYY-MM-DD`; `time` → 24-hour `HH:MM`;
//! `number` → decimal digits; `yes_no` → `yes` | `no`; `name` → capitalized
//! words; `enum` → the canonical value.
//!
//! Dates are resolved against `today` (never the clock): a bare weekday is
//! its next occurrence 1–7 days ahead; `next <weekday>` is that weekday in
//! the next calendar week (Monday-based) — on Monday 2026-11-23, `Tuesday` is
//! 2026-11-24 and `next Tuesday` 2026-12-01; a month and day without a year
//! is the next such date on or after today; numeric dates are US
//! month/day (`3/5` = March 5th). Times: an hour without AM/PM below the
//! agent's `earliest_hour` (default 8) is afternoon (`2` → 14:00, `9` →
//! 09:00); `in the morning` / `in the afternoon` / `evening` decide when said.

use super::text::{find_contiguous, number, ordinal, with_ordinal_suffix};
use serde::Deserialize;
use time::{Date, Duration, Month, Weekday};

/// The type of a slot, as written in YAML (`type: date`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SlotType {
    /// A calendar day.
    Date,
    /// A time of day.
    Time,
    /// A whole number.
    Number,
    /// Yes or no.
    YesNo,
    /// A person's name.
    Name,
    /// One of listed values (with synonyms).
    Enum,
}

/// A compiled slot type.
#[derive(Debug, Clone)]
pub(crate) enum SlotKind {
    Date,
    Time,
    Number,
    YesNo,
    Name,
    /// Canonical values with their normalized synonyms (the value itself
    /// included), longest synonym first within each value.
    Enum(Vec<EnumValue>),
}

/// One value of an enum slot.
#[derive(Debug, Clone)]
pub(crate) struct EnumValue {
    /// The canonical value (stored and rendered).
    pub(crate) value: String,
    /// Normalized synonyms, each a token list.
    pub(crate) synonyms: Vec<Vec<String>>,
}

/// What extraction needs besides the words.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    /// Resolves relative dates.
    pub(crate) today: Date,
    /// Bare hours below this are read as PM.
    pub(crate) earliest_hour: u8,
}

/// An extracted value and the tokens it used (`start..end`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// Normalized value.
    pub(crate) value: String,
    /// First token used.
    pub(crate) start: usize,
    /// One past the last token used.
    pub(crate) end: usize,
}

impl Extracted {
    fn new(value: String, start: usize, end: usize) -> Self {
        Extracted { value, start, end }
    }
}

/// Extracts a value of `kind` from `toks` (blanked tokens are `""`).
pub(crate) fn extract(kind: &SlotKind, toks: &[&str], ctx: &Ctx, loose: bool) -> Option<Extracted> {
    match kind {
        SlotKind::Date => extract_date(toks, ctx.today, loose).map(|(d, s, e)| Extracted::new(iso_date(d), s, e)),
        SlotKind::Time => extract_time(toks, ctx.earliest_hour, loose)
            .map(|(h, m, s, e)| Extracted::new(format!("{h:02}:{m:02}"), s, e)),
        SlotKind::Number => toks
            .iter()
            .position(|t| number(t).is_some())
            .and_then(|i| number(toks[i]).map(|n| Extracted::new(n.to_string(), i, i + 1))),
        SlotKind::YesNo => extract_yes_no(toks),
        SlotKind::Name => extract_name(toks, loose),
        SlotKind::Enum(values) => extract_enum(values, toks),
    }
}

/// How a normalized value is said: dates as `Tuesday, December 1st` (with
/// the year when it is not `today`'s), times as `2:30 PM` / `2 PM` / `noon`,
/// enum values with `_` read as spaces; anything unparsable as it is.
pub(crate) fn spoken(kind: &SlotKind, value: &str, today: Date) -> String {
    match kind {
        SlotKind::Date => match parse_iso_date(value) {
            Some(d) => {
                let mut s = format!("{}, {} {}", d.weekday(), d.month(), with_ordinal_suffix(d.day().into()));
                if d.year() != today.year() {
                    s.push_str(&format!(", {}", d.year()));
                }
                s
            }
            None => value.to_string(),
        },
        SlotKind::Time => match parse_hhmm(value) {
            Some((0, 0)) => "midnight".into(),
            Some((12, 0)) => "noon".into(),
            Some((h, m)) => {
                let ampm = if h < 12 { "AM" } else { "PM" };
                let h12 = match h % 12 {
                    0 => 12,
                    x => x,
                };
                if m == 0 { format!("{h12} {ampm}") } else { format!("{h12}:{m:02} {ampm}") }
            }
            None => value.to_string(),
        },
        SlotKind::Enum(_) => value.replace('_', " "),
        _ => value.to_string(),
    }
}

/// `YYYY-MM-DD`.
pub(crate) fn iso_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_iso_date(s: &str) -> Option<Date> {
    let mut it = s.splitn(3, '-');
    let y: i32 = it.next()?.parse().ok()?;
    let m: u8 = it.next()?.parse().ok()?;
    let d: u8 = it.next()?.parse().ok()?;
    Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()
}

fn parse_hhmm(s: &str) -> Option<(u8, u8)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

// ---------------------------------------------------------------- dates

fn month(t: &str) -> Option<Month> {
    Some(match t {
        "january" | "jan" => Month::January,
        "february" | "feb" => Month::February,
        "march" => Month::March,
        "april" | "apr" => Month::April,
        "may" => Month::May,
        "june" | "jun" => Month::June,
        "july" | "jul" => Month::July,
        "august" | "aug" => Month::August,
        "september" | "sept" | "sep" => Month::September,
        "october" | "oct" => Month::October,
        "november" | "nov" => Month::November,
        "december" | "dec" => Month::December,
        _ => return None,
    })
}

fn weekday(t: &str) -> Option<Weekday> {
    Some(match t {
        "monday" | "mondays" => Weekday::Monday,
        "tuesday" | "tuesdays" | "tues" => Weekday::Tuesday,
        "wednesday" | "wednesdays" | "weds" => Weekday::Wednesday,
        "thursday" | "thursdays" | "thurs" => Weekday::Thursday,
        "friday" | "fridays" => Weekday::Friday,
        "saturday" | "saturdays" => Weekday::Saturday,
        "sunday" | "sundays" => Weekday::Sunday,
        _ => return None,
    })
}

/// A day of month: `5th` or `5` (1–31).
fn day_num(t: &str) -> Option<u8> {
    ordinal(t).or_else(|| number(t)).filter(|d| (1..=31).contains(d)).map(|d| d as u8)
}

fn add_days(d: Date, n: i64) -> Option<Date> {
    d.checked_add(Duration::days(n))
}

/// Month and day, next occurrence on or after `today` unless `year` is given.
fn resolve_month_day(today: Date, m: Month, day: u8, year: Option<i32>) -> Option<Date> {
    if let Some(y) = year {
        return Date::from_calendar_date(y, m, day).ok();
    }
    (0..=4).find_map(|k| Date::from_calendar_date(today.year() + k, m, day).ok().filter(|d| *d >= today))
}

/// Day of month only: this month if still ahead, else the next month that has it.
fn resolve_day_of_month(today: Date, day: u8) -> Option<Date> {
    let (mut y, mut m) = (today.year(), today.month());
    for _ in 0..13 {
        if let Ok(d) = Date::from_calendar_date(y, m, day)
            && d >= today
        {
            return Some(d);
        }
        if m == Month::December {
            y += 1;
        }
        m = m.next();
    }
    None
}

fn resolve_weekday(today: Date, wd: Weekday, next_week: bool) -> Option<Date> {
    let ahead =
        (i64::from(wd.number_days_from_monday()) - i64::from(today.weekday().number_days_from_monday())).rem_euclid(7);
    let ahead = if ahead == 0 { 7 } else { ahead };
    let to_sunday = 6 - i64::from(today.weekday().number_days_from_monday());
    let ahead = if next_week && ahead <= to_sunday { ahead + 7 } else { ahead };
    add_days(today, ahead)
}

/// `M/D` or `M/D/Y` (US order).
fn slash_date(t: &str, today: Date) -> Option<Date> {
    let parts: Vec<&str> = t.split('/').collect();
    let m = Month::try_from(u8::try_from(number(parts.first()?)?).ok()?).ok()?;
    let d = u8::try_from(number(parts.get(1)?)?).ok()?;
    match parts.get(2) {
        None => resolve_month_day(today, m, d, None),
        Some(y) => {
            let y = number(y)? as i32;
            let y = if y < 100 { 2000 + y } else { y };
            resolve_month_day(today, m, d, Some(y))
        }
    }
}

fn year_at(toks: &[&str], i: usize) -> Option<i32> {
    toks.get(i).and_then(|t| number(t)).filter(|y| (2000..=2100).contains(y)).map(|y| y as i32)
}

/// Returns (date, start, end).
fn extract_date(toks: &[&str], today: Date, loose: bool) -> Option<(Date, usize, usize)> {
    let at = |i: usize| toks.get(i).copied().unwrap_or("");
    // 1. numeric M/D[/Y]
    for (i, t) in toks.iter().enumerate() {
        if t.contains('/')
            && let Some(d) = slash_date(t, today)
        {
            return Some((d, i, i + 1));
        }
    }
    // 2. month forms: "march 5[th] [2027]", "march the 5th", "[the] 5th [of] march"
    for (i, t) in toks.iter().enumerate() {
        let Some(m) = month(t) else { continue };
        let j = if at(i + 1) == "the" { i + 2 } else { i + 1 };
        if let Some(day) = day_num(at(j)) {
            let year = year_at(toks, j + 1);
            let end = if year.is_some() { j + 2 } else { j + 1 };
            if let Some(d) = resolve_month_day(today, m, day, year) {
                return Some((d, i, end));
            }
        }
        let k = if i >= 1 && at(i - 1) == "of" { i.checked_sub(2) } else { i.checked_sub(1) };
        if let Some(k) = k
            && let Some(day) = day_num(at(k))
        {
            let start = if k >= 1 && at(k - 1) == "the" { k - 1 } else { k };
            let year = year_at(toks, i + 1);
            let end = if year.is_some() { i + 2 } else { i + 1 };
            if let Some(d) = resolve_month_day(today, m, day, year) {
                return Some((d, start, end));
            }
        }
    }
    // 3. relative words
    for (i, t) in toks.iter().enumerate() {
        match *t {
            "today" => return Some((today, i, i + 1)),
            "tomorrow" => {
                if i >= 3 && toks[i - 3..i] == ["the", "day", "after"] {
                    return add_days(today, 2).map(|d| (d, i - 3, i + 1));
                }
                if i >= 2 && toks[i - 2..i] == ["day", "after"] {
                    return add_days(today, 2).map(|d| (d, i - 2, i + 1));
                }
                return add_days(today, 1).map(|d| (d, i, i + 1));
            }
            "in" => {
                let (n, j) = match at(i + 1) {
                    "a" | "an" => (Some(1), i + 2),
                    x => (number(x), i + 2),
                };
                let Some(n) = n.filter(|n| *n <= 366) else { continue };
                let per = match at(j) {
                    "day" | "days" => 1,
                    "week" | "weeks" => 7,
                    _ => continue,
                };
                return add_days(today, i64::from(n) * per).map(|d| (d, i, j + 1));
            }
            _ => {}
        }
    }
    // 4. weekdays: "[this|next|coming|on] tuesday [next week]"
    for (i, t) in toks.iter().enumerate() {
        let Some(wd) = weekday(t) else { continue };
        let before = if i >= 1 { at(i - 1) } else { "" };
        let after_next_week = at(i + 1) == "next" && at(i + 2) == "week";
        let next_week = before == "next" || after_next_week;
        let start = if matches!(before, "next" | "this" | "coming" | "on") { i - 1 } else { i };
        let end = if after_next_week { i + 3 } else { i + 1 };
        if let Some(d) = resolve_weekday(today, wd, next_week) {
            return Some((d, start, end));
        }
    }
    // 5. "the 5th"
    for (i, t) in toks.iter().enumerate() {
        if *t == "the"
            && let Some(day) = ordinal(at(i + 1)).filter(|d| (1..=31).contains(d))
            && let Some(d) = resolve_day_of_month(today, day as u8)
        {
            return Some((d, i, i + 2));
        }
    }
    if !loose {
        return None;
    }
    // loose: a bare "5th" or "5"
    for (i, t) in toks.iter().enumerate() {
        if let Some(day) = day_num(t)
            && let Some(d) = resolve_day_of_month(today, day)
        {
            return Some((d, i, i + 1));
        }
    }
    None
}

// ---------------------------------------------------------------- times

/// Part of the day said anywhere in the utterance: Some(true) = PM.
fn part_of_day(toks: &[&str]) -> Option<bool> {
    toks.iter().find_map(|t| match *t {
        "morning" => Some(false),
        "afternoon" | "evening" | "tonight" | "night" => Some(true),
        _ => None,
    })
}

/// A number-based time starting at `i`: (hour, minute, end, explicit) where
/// explicit means minutes, `oclock` or `am`/`pm` were said.
fn clock_at(toks: &[&str], i: usize) -> Option<(u8, u8, usize, bool, Option<bool>)> {
    let at = |k: usize| toks.get(k).copied().unwrap_or("");
    let t = at(i);
    let (h, m, mut end, mut explicit) = if let Some((hs, ms)) = t.split_once(':') {
        let (h, m) = (number(hs)?, number(ms)?);
        (h, m, i + 1, true)
    } else {
        let h = number(t)?;
        if let Some(m) = number(at(i + 1)).filter(|m| (10..=59).contains(m) && at(i + 1).len() == 2) {
            (h, m, i + 2, true)
        } else if matches!(at(i + 1), "oh" | "o") && number(at(i + 2)).is_some_and(|m| m <= 9) {
            (h, number(at(i + 2))?, i + 3, true)
        } else if at(i + 1) == "00" {
            (h, 0, i + 2, true)
        } else {
            (h, 0, i + 1, false)
        }
    };
    if h > 23 || m > 59 {
        return None;
    }
    if at(end) == "oclock" {
        end += 1;
        explicit = true;
    } else if at(end) == "o" && at(end + 1) == "clock" {
        end += 2;
        explicit = true;
    }
    let mut meridiem = None;
    match at(end) {
        "am" => meridiem = Some(false),
        "pm" => meridiem = Some(true),
        "a" | "p" if at(end + 1) == "m" => meridiem = Some(at(end) == "p"),
        _ => {}
    }
    if meridiem.is_some() {
        end += if matches!(at(end), "a" | "p") { 2 } else { 1 };
        explicit = true;
    }
    Some((h as u8, m as u8, end, explicit, meridiem))
}

/// 24-hour clock from a spoken hour.
fn to_24h(h: u8, m: u8, meridiem: Option<bool>, earliest_hour: u8) -> Option<(u8, u8)> {
    let h = match meridiem {
        _ if h > 12 => h,
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        Some(_) => h,
        None if h == 0 || h == 12 => h,
        None if h < earliest_hour => h + 12,
        None => h,
    };
    (h < 24 && m < 60).then_some((h, m))
}

/// Returns (hour, minute, start, end).
fn extract_time(toks: &[&str], earliest_hour: u8, loose: bool) -> Option<(u8, u8, usize, usize)> {
    let at = |k: usize| toks.get(k).copied().unwrap_or("");
    let said_pm = part_of_day(toks);
    let finish = |h: u8, m: u8, mer: Option<bool>, s: usize, e: usize| {
        to_24h(h, m, mer.or(said_pm), earliest_hour).map(|(h, m)| (h, m, s, e))
    };
    for i in 0..toks.len() {
        match at(i) {
            "noon" | "midday" => return Some((12, 0, i, i + 1)),
            "midnight" => return Some((0, 0, i, i + 1)),
            "half" | "quarter" if matches!(at(i + 1), "past" | "after" | "to" | "till" | "til" | "of") => {
                let Some(h) = number(at(i + 2)).filter(|h| (1..=12).contains(h)) else { continue };
                let h = h as u8;
                let forward = matches!(at(i + 1), "past" | "after");
                let (h, m) = match (at(i), forward) {
                    ("half", true) => (h, 30),
                    ("half", false) => continue,
                    (_, true) => (h, 15),
                    (_, false) => (if h == 1 { 12 } else { h - 1 }, 45),
                };
                return finish(h, m, clock_at(toks, i + 2).and_then(|c| c.4), i, i + 3);
            }
            _ => {}
        }
        // "10 past 2", "20 to 3", "5 minutes past 2"
        if let Some(mins) = number(at(i)).filter(|m| (1..=59).contains(m)) {
            let j = if matches!(at(i + 1), "minutes" | "minute") { i + 2 } else { i + 1 };
            if matches!(at(j), "past" | "after" | "to" | "till" | "til")
                && let Some(h) = number(at(j + 1)).filter(|h| (1..=12).contains(h))
            {
                let (h, m) = if matches!(at(j), "past" | "after") {
                    (h as u8, mins as u8)
                } else {
                    (if h == 1 { 12 } else { h as u8 - 1 }, 60 - mins as u8)
                };
                return finish(h, m, None, i, j + 2);
            }
        }
        // "at|around|about|by 2 …" or an explicit clock
        let prefixed = matches!(at(i), "at" | "around" | "about" | "by");
        let k = if prefixed { i + 1 } else { i };
        if let Some((h, m, end, explicit, mer)) = clock_at(toks, k)
            && (prefixed || explicit)
        {
            return finish(h, m, mer, i, end);
        }
        // "2 in the afternoon"
        if let Some(h) = number(at(i)).filter(|h| (1..=12).contains(h)) {
            if at(i + 1) == "in" && at(i + 2) == "the" && matches!(at(i + 3), "morning" | "afternoon" | "evening") {
                return finish(h as u8, 0, Some(at(i + 3) != "morning"), i, i + 4);
            }
            if matches!(at(i + 1), "tonight" | "this") {
                return finish(h as u8, 0, said_pm, i, i + 1);
            }
        }
    }
    if !loose {
        return None;
    }
    for i in 0..toks.len() {
        if let Some((h, m, end, _, mer)) = clock_at(toks, i) {
            return finish(h, m, mer, i, end);
        }
    }
    for (i, t) in toks.iter().enumerate() {
        let (h, m) = match *t {
            "morning" => (9, 0),
            "lunch" | "lunchtime" => (12, 0),
            "afternoon" => (14, 0),
            "evening" => (17, 0),
            _ => continue,
        };
        return Some((h, m, i, i + 1));
    }
    None
}

// ---------------------------------------------------------------- yes/no, names, enums

fn extract_yes_no(toks: &[&str]) -> Option<Extracted> {
    let at = |k: usize| toks.get(k).copied().unwrap_or("");
    for (i, t) in toks.iter().enumerate() {
        let yes = match *t {
            "yes" | "yeah" | "yep" | "yup" | "ya" | "yea" | "sure" | "correct" | "right" | "ok" | "okay"
            | "absolutely" | "definitely" | "certainly" | "perfect" | "great" | "fine" | "alright" | "affirmative"
            | "mhm" | "exactly" => true,
            "huh" if i >= 1 && toks[i - 1] == "uh" => true,
            "go" if at(i + 1) == "ahead" => true,
            "no" if matches!(at(i + 1), "problem" | "worries") => true,
            "no" | "nope" | "nah" | "not" | "dont" | "isnt" | "doesnt" | "incorrect" | "wrong" | "negative"
            | "never" | "wasnt" | "cant" => false,
            _ => continue,
        };
        return Some(Extracted::new(if yes { "yes" } else { "no" }.into(), i, i + 1));
    }
    None
}

/// Words that end or cannot be part of a name.
fn not_name(t: &str) -> bool {
    t.is_empty()
        || !t.chars().all(char::is_alphabetic)
        || weekday(t).is_some()
        || month(t).is_some_and(|_| !matches!(t, "april" | "may" | "june"))
        || matches!(
            t,
            "and"
                | "i"
                | "id"
                | "im"
                | "ill"
                | "ive"
                | "for"
                | "on"
                | "at"
                | "to"
                | "the"
                | "a"
                | "an"
                | "please"
                | "thanks"
                | "thank"
                | "you"
                | "calling"
                | "call"
                | "want"
                | "would"
                | "like"
                | "need"
                | "book"
                | "my"
                | "is"
                | "its"
                | "it"
                | "um"
                | "uh"
                | "er"
                | "hmm"
                | "yes"
                | "yeah"
                | "no"
                | "so"
                | "but"
                | "today"
                | "tomorrow"
                | "next"
                | "this"
                | "that"
                | "thats"
                | "from"
                | "with"
                | "about"
                | "appointment"
                | "cleaning"
                | "checkup"
                | "hi"
                | "hello"
                | "hey"
                | "ok"
                | "okay"
                | "sure"
                | "well"
                | "name"
                | "last"
                | "first"
                | "of"
                | "in"
                | "we"
                | "me"
                | "was"
                | "be"
                | "have"
                | "cancel"
                | "move"
                | "change"
                | "reschedule"
                | "not"
                | "dont"
                | "can"
                | "could"
                | "just"
                | "speak"
                | "talk"
                | "person"
                | "what"
                | "when"
                | "how"
                | "who"
                | "why"
                | "where"
                | "do"
                | "under"
                | "as"
                | "by"
                | "or"
        )
}

fn capitalize(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Up to three name words starting at `i`: (name, end).
fn name_words(toks: &[&str], i: usize) -> Option<(String, usize)> {
    let n = toks[i.min(toks.len())..].iter().take(3).take_while(|t| !not_name(t)).count();
    (n > 0).then(|| (capitalize(&toks[i..i + n]), i + n))
}

fn extract_name(toks: &[&str], loose: bool) -> Option<Extracted> {
    const STRICT: [&[&str]; 4] = [&["my", "name", "is"], &["name", "is"], &["this", "is"], &["call", "me"]];
    const LOOSE: [&[&str]; 5] = [&["its"], &["it", "is"], &["im"], &["i", "am"], &["under"]];
    let triggers = STRICT.iter().chain(if loose { LOOSE.iter() } else { [].iter() });
    for trig in triggers {
        for i in 0..toks.len() {
            if toks[i..].starts_with(trig)
                && let Some((name, end)) = name_words(toks, i + trig.len())
            {
                return Some(Extracted::new(name, i, end));
            }
        }
    }
    if !loose {
        return None;
    }
    // A bare answer: the whole utterance, fillers aside, is one to three name words.
    const FILLER: [&str; 14] =
        ["yes", "yeah", "sure", "ok", "okay", "um", "uh", "hi", "hello", "well", "so", "its", "please", "thanks"];
    let live: Vec<(usize, &str)> = toks.iter().copied().enumerate().filter(|(_, t)| !t.is_empty()).collect();
    let first = live.iter().position(|(_, t)| !FILLER.contains(t))?;
    let last = live.iter().rposition(|(_, t)| !FILLER.contains(t))?;
    let core = &live[first..=last];
    if core.is_empty() || core.len() > 3 || core.iter().any(|(_, t)| not_name(t)) {
        return None;
    }
    let words: Vec<&str> = core.iter().map(|(_, t)| *t).collect();
    // the core must be contiguous (no blanked token inside)
    if core.last()?.0 - core[0].0 + 1 != core.len() {
        return None;
    }
    Some(Extracted::new(capitalize(&words), core[0].0, core.last()?.0 + 1))
}

fn extract_enum(values: &[EnumValue], toks: &[&str]) -> Option<Extracted> {
    let mut best: Option<(usize, usize, &str)> = None; // (len, start, value)
    for v in values {
        for syn in &v.synonyms {
            if let Some((s, e)) = find_contiguous(toks, syn) {
                let better = match best {
                    None => true,
                    Some((len, start, _)) => e - s > len || (e - s == len && s < start),
                };
                if better {
                    best = Some((e - s, s, &v.value));
                }
            }
        }
    }
    best.map(|(len, s, v)| Extracted::new(v.to_string(), s, s + len))
}

#[cfg(test)]
mod tests {
    use super::super::text::normalize;
    use super::*;
    use time::macros::date;

    const TODAY: Date = date!(2026 - 11 - 23); // a Monday

    fn ctx() -> Ctx {
        Ctx { today: TODAY, earliest_hour: 8 }
    }

    fn run(kind: &SlotKind, s: &str, loose: bool) -> Option<String> {
        let toks = normalize(s);
        let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        extract(kind, &refs, &ctx(), loose).map(|e| e.value)
    }

    fn date_of(s: &str) -> Option<String> {
        run(&SlotKind::Date, s, false)
    }
    fn date_loose(s: &str) -> Option<String> {
        run(&SlotKind::Date, s, true)
    }
    fn time_of(s: &str) -> Option<String> {
        run(&SlotKind::Time, s, false)
    }
    fn time_loose(s: &str) -> Option<String> {
        run(&SlotKind::Time, s, true)
    }

    #[test]
    fn relative_dates() {
        assert_eq!(date_of("today please").as_deref(), Some("2026-11-23"));
        assert_eq!(date_of("tomorrow").as_deref(), Some("2026-11-24"));
        assert_eq!(date_of("the day after tomorrow").as_deref(), Some("2026-11-25"));
        assert_eq!(date_of("day after tomorrow works").as_deref(), Some("2026-11-25"));
        assert_eq!(date_of("in three days").as_deref(), Some("2026-11-26"));
        assert_eq!(date_of("in a week").as_deref(), Some("2026-11-30"));
        assert_eq!(date_of("in two weeks").as_deref(), Some("2026-12-07"));
    }

    #[test]
    fn weekday_dates() {
        assert_eq!(date_of("tuesday").as_deref(), Some("2026-11-24"));
        assert_eq!(date_of("on Tuesday").as_deref(), Some("2026-11-24"));
        assert_eq!(date_of("this friday").as_deref(), Some("2026-11-27"));
        assert_eq!(date_of("next tuesday").as_deref(), Some("2026-12-01"));
        assert_eq!(date_of("tuesday next week").as_deref(), Some("2026-12-01"));
        assert_eq!(date_of("monday").as_deref(), Some("2026-11-30"), "today's weekday means a week ahead");
        assert_eq!(date_of("next monday").as_deref(), Some("2026-11-30"));
        assert_eq!(date_of("sunday").as_deref(), Some("2026-11-29"));
        assert_eq!(date_of("next sunday").as_deref(), Some("2026-12-06"));
        // from a Friday, "next monday" is the coming Monday
        let fri = Ctx { today: date!(2026 - 11 - 27), earliest_hour: 8 };
        let toks = normalize("next monday");
        let refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        assert_eq!(extract(&SlotKind::Date, &refs, &fri, false).unwrap().value, "2026-11-30");
    }

    #[test]
    fn calendar_dates() {
        assert_eq!(date_of("march 5").as_deref(), Some("2027-03-05"));
        assert_eq!(date_of("March 5th").as_deref(), Some("2027-03-05"));
        assert_eq!(date_of("march the fifth").as_deref(), Some("2027-03-05"));
        assert_eq!(date_of("the 5th of March").as_deref(), Some("2027-03-05"));
        assert_eq!(date_of("fifth of march").as_deref(), Some("2027-03-05"));
        assert_eq!(date_of("5 march").as_deref(), Some("2027-03-05"));
        assert_eq!(date_of("december twenty third").as_deref(), Some("2026-12-23"));
        assert_eq!(date_of("november 23").as_deref(), Some("2026-11-23"));
        assert_eq!(date_of("november 22").as_deref(), Some("2027-11-22"));
        assert_eq!(date_of("march 5 2028").as_deref(), Some("2028-03-05"));
        assert_eq!(date_of("3/5").as_deref(), Some("2027-03-05"));
        assert_eq!(date_of("12/1/2026").as_deref(), Some("2026-12-01"));
        assert_eq!(date_of("12/1/27").as_deref(), Some("2027-12-01"));
        assert_eq!(date_of("the 5th").as_deref(), Some("2026-12-05"));
        assert_eq!(date_of("on the twenty eighth").as_deref(), Some("2026-11-28"));
        assert_eq!(date_of("the 31st").as_deref(), Some("2026-12-31"));
        assert_eq!(date_of("february 30"), None);
        assert_eq!(date_of("13/45"), None);
        assert_eq!(date_of("may i book"), None);
        assert_eq!(date_of("tuesday march 3rd").as_deref(), Some("2027-03-03"), "explicit date wins");
    }

    #[test]
    fn bare_days_only_when_asked() {
        assert_eq!(date_of("5th"), None);
        assert_eq!(date_loose("5th").as_deref(), Some("2026-12-05"));
        assert_eq!(date_loose("um the twenty fifth").as_deref(), Some("2026-11-25"));
        assert_eq!(date_loose("30").as_deref(), Some("2026-11-30"));
        assert_eq!(date_loose("I'm not sure"), None);
    }

    #[test]
    fn clock_times() {
        assert_eq!(time_of("2:30 pm").as_deref(), Some("14:30"));
        assert_eq!(time_of("2:30 p.m.").as_deref(), Some("14:30"));
        assert_eq!(time_of("10 am").as_deref(), Some("10:00"));
        assert_eq!(time_of("10am").as_deref(), Some("10:00"));
        assert_eq!(time_of("ten a m").as_deref(), Some("10:00"));
        assert_eq!(time_of("at ten thirty").as_deref(), Some("10:30"));
        assert_eq!(time_of("two thirty in the afternoon").as_deref(), Some("14:30"));
        assert_eq!(time_of("three in the afternoon").as_deref(), Some("15:00"));
        assert_eq!(time_of("nine in the morning").as_deref(), Some("09:00"));
        assert_eq!(time_of("eleven o'clock").as_deref(), Some("11:00"));
        assert_eq!(time_of("eleven o clock").as_deref(), Some("11:00"));
        assert_eq!(time_of("at 2").as_deref(), Some("14:00"));
        assert_eq!(time_of("around four").as_deref(), Some("16:00"));
        assert_eq!(time_of("14:30").as_deref(), Some("14:30"));
        assert_eq!(time_of("12 pm").as_deref(), Some("12:00"));
        assert_eq!(time_of("12 am").as_deref(), Some("00:00"));
        assert_eq!(time_of("two oh five").as_deref(), Some("14:05"));
        assert_eq!(time_of("ten fifteen").as_deref(), Some("10:15"));
        assert_eq!(time_of("at 8 in the evening").as_deref(), Some("20:00"));
        assert_eq!(time_of("at seven").as_deref(), Some("19:00"));
        assert_eq!(time_of("at 8").as_deref(), Some("08:00"));
    }

    #[test]
    fn spoken_times() {
        assert_eq!(time_of("half past two").as_deref(), Some("14:30"));
        assert_eq!(time_of("quarter past ten").as_deref(), Some("10:15"));
        assert_eq!(time_of("a quarter to three").as_deref(), Some("14:45"));
        assert_eq!(time_of("quarter of one").as_deref(), Some("12:45"));
        assert_eq!(time_of("ten past nine").as_deref(), Some("09:10"));
        assert_eq!(time_of("twenty to four").as_deref(), Some("15:40"));
        assert_eq!(time_of("five minutes past eleven").as_deref(), Some("11:05"));
        assert_eq!(time_of("noon").as_deref(), Some("12:00"));
        assert_eq!(time_of("at midday").as_deref(), Some("12:00"));
        assert_eq!(time_of("half past nine in the evening").as_deref(), Some("21:30"));
    }

    #[test]
    fn bare_times_only_when_asked() {
        assert_eq!(time_of("2"), None);
        assert_eq!(time_of("morning"), None);
        assert_eq!(time_loose("2").as_deref(), Some("14:00"));
        assert_eq!(time_loose("um nine").as_deref(), Some("09:00"));
        assert_eq!(time_loose("in the morning").as_deref(), Some("09:00"));
        assert_eq!(time_loose("afternoon please").as_deref(), Some("14:00"));
        assert_eq!(time_loose("sometime in the evening").as_deref(), Some("17:00"));
        assert_eq!(time_loose("lunchtime").as_deref(), Some("12:00"));
        assert_eq!(time_loose("whenever"), None);
        assert_eq!(time_loose("99"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(run(&SlotKind::Number, "twenty five", false).as_deref(), Some("25"));
        assert_eq!(run(&SlotKind::Number, "we are three people", false).as_deref(), Some("3"));
        assert_eq!(run(&SlotKind::Number, "one hundred and twelve", false).as_deref(), Some("112"));
        assert_eq!(run(&SlotKind::Number, "none", false), None);
    }

    #[test]
    fn yes_and_no() {
        let yn = |s: &str| run(&SlotKind::YesNo, s, false);
        for s in [
            "yes",
            "Yeah.",
            "sure",
            "correct",
            "that's right",
            "yes please",
            "ok",
            "yep that works",
            "uh huh",
            "no problem",
            "go ahead",
            "absolutely",
        ] {
            assert_eq!(yn(s).as_deref(), Some("yes"), "{s}");
        }
        for s in ["no", "nope", "No, that's not right.", "that's not right", "I don't think so", "nah", "wrong"] {
            assert_eq!(yn(s).as_deref(), Some("no"), "{s}");
        }
        assert_eq!(yn("maybe later"), None);
    }

    #[test]
    fn names() {
        let strict = |s: &str| run(&SlotKind::Name, s, false);
        let loose = |s: &str| run(&SlotKind::Name, s, true);
        assert_eq!(strict("my name is Anna Smith").as_deref(), Some("Anna Smith"));
        assert_eq!(strict("hi this is john calling about my appointment").as_deref(), Some("John"));
        assert_eq!(strict("my name is anna smith and i need a cleaning").as_deref(), Some("Anna Smith"));
        assert_eq!(strict("this is for a cleaning"), None);
        assert_eq!(strict("anna smith"), None);
        assert_eq!(loose("anna smith").as_deref(), Some("Anna Smith"));
        assert_eq!(loose("It's Maria Lopez.").as_deref(), Some("Maria Lopez"));
        assert_eq!(loose("yeah it's under garcia").as_deref(), Some("Garcia"));
        assert_eq!(loose("sure, Tom Baker please").as_deref(), Some("Tom Baker"));
        assert_eq!(loose("i want to cancel instead"), None);
        assert_eq!(loose("next tuesday"), None);
    }

    #[test]
    fn enums_with_synonyms() {
        let kind = SlotKind::Enum(vec![
            EnumValue { value: "cleaning".into(), synonyms: vec![normalize("cleaning"), normalize("clean")] },
            EnumValue {
                value: "checkup".into(),
                synonyms: vec![normalize("checkup"), normalize("check up"), normalize("exam")],
            },
            EnumValue { value: "emergency".into(), synonyms: vec![normalize("emergency"), normalize("tooth ache")] },
        ]);
        assert_eq!(run(&kind, "I'd like to book a cleaning", false).as_deref(), Some("cleaning"));
        assert_eq!(run(&kind, "just a regular check-up", false).as_deref(), Some("checkup"));
        assert_eq!(run(&kind, "an exam please", false).as_deref(), Some("checkup"));
        assert_eq!(run(&kind, "i have a tooth ache", false).as_deref(), Some("emergency"));
        assert_eq!(run(&kind, "whitening", false), None);
    }

    #[test]
    fn blanked_tokens_are_not_reused() {
        let toks = normalize("march 5 at 2");
        let mut refs: Vec<&str> = toks.iter().map(String::as_str).collect();
        let d = extract(&SlotKind::Date, &refs, &ctx(), false).unwrap();
        assert_eq!((d.start, d.end), (0, 2));
        for r in &mut refs[d.start..d.end] {
            *r = "";
        }
        assert_eq!(extract(&SlotKind::Time, &refs, &ctx(), true).unwrap().value, "14:00");
    }

    #[test]
    fn spoken_forms() {
        assert_eq!(spoken(&SlotKind::Date, "2026-12-01", TODAY), "Tuesday, December 1st");
        assert_eq!(spoken(&SlotKind::Date, "2027-03-05", TODAY), "Friday, March 5th, 2027");
        assert_eq!(spoken(&SlotKind::Time, "14:30", TODAY), "2:30 PM");
        assert_eq!(spoken(&SlotKind::Time, "09:00", TODAY), "9 AM");
        assert_eq!(spoken(&SlotKind::Time, "12:00", TODAY), "noon");
        assert_eq!(spoken(&SlotKind::Time, "00:15", TODAY), "12:15 AM");
        assert_eq!(spoken(&SlotKind::Enum(vec![]), "root_canal", TODAY), "root canal");
        assert_eq!(spoken(&SlotKind::Date, "garbage", TODAY), "garbage");
    }

    #[test]
    fn odd_input_never_panics() {
        let kinds = [SlotKind::Date, SlotKind::Time, SlotKind::Number, SlotKind::YesNo, SlotKind::Name];
        for s in [
            "",
            "the",
            "in",
            "in 99999 days",
            "at",
            "quarter to",
            "half past 0",
            "0/0/0",
            "99:99",
            "/",
            "the 0th",
            "uh",
            "my name is",
            "december 31 2100",
            "in 366 weeks",
            "12/31/99999",
        ] {
            for k in &kinds {
                let _ = run(k, s, true);
                let _ = run(k, s, false);
            }
        }
    }
}
