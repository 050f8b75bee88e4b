//! Telephone numbers as denwa keeps and sends them: the national form
//! (`0312345678`, the way people in Japan write and dial numbers) inside,
//! and the form each trunk wants on the wire (national, E.164 digits
//! `81312345678`, or E.164 with a plus `+81312345678`, ITU-T E.164 §6).
//!
//! Also the class of a dialled destination (emergency, national,
//! international, other) by the numbering plan's prefixes.
//!
//! Pure text: no configuration lookup, no I/O.

/// The numbering plan of the country denwa sits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPlan {
    /// Country calling code without `+`, such as `81`.
    pub country_code: String,
    /// Trunk prefix of national numbers, such as `0`.
    pub national_prefix: String,
    /// International call prefix, such as `010`.
    pub international_prefix: String,
}

impl Default for NumberPlan {
    fn default() -> Self {
        NumberPlan {
            country_code: "81".into(),
            national_prefix: "0".into(),
            international_prefix: "010".into(),
        }
    }
}

/// How a trunk wants numbers written (Request-URI, From, To).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumberFormat {
    /// `0312345678`
    #[default]
    National,
    /// `81312345678`
    E164,
    /// `+81312345678`
    E164Plus,
}

impl NumberFormat {
    pub fn parse(s: &str) -> Option<NumberFormat> {
        match s {
            "national" => Some(NumberFormat::National),
            "e164" => Some(NumberFormat::E164),
            "e164_plus" => Some(NumberFormat::E164Plus),
            _ => None,
        }
    }
}

/// What a destination is, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberClass {
    Emergency,
    International,
    National,
    /// Anything else (service codes, unknown short numbers).
    Other,
}

/// ASCII digits only (at least one).
pub fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// National significant numbers are at least this long (JP: 9 digits
/// after the country code); shorter `81…` strings are not E.164.
const MIN_SIGNIFICANT: usize = 9;

impl NumberPlan {
    /// The national form of a number written in any of the three forms;
    /// `None` when it is not digits (an optional leading `+` aside).
    /// `+<cc>N` and `<cc>N` (long enough) become `<national prefix>N`;
    /// `+<other cc>N` becomes `<international prefix><other cc>N`.
    pub fn to_national(&self, number: &str) -> Option<String> {
        let (plus, digits) = match number.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, number),
        };
        if !is_digits(digits) {
            return None;
        }
        if let Some(rest) = digits.strip_prefix(self.country_code.as_str()) {
            if plus || (rest.len() >= MIN_SIGNIFICANT && !rest.starts_with('0')) {
                return Some(format!("{}{rest}", self.national_prefix));
            }
        }
        if plus {
            return Some(format!("{}{digits}", self.international_prefix));
        }
        Some(digits.to_owned())
    }

    /// A national-form number written as a trunk wants it. Numbers that
    /// have no E.164 form (service codes, emergency numbers) stay as they
    /// are.
    pub fn format(&self, national: &str, format: NumberFormat) -> String {
        let e164 = if let Some(rest) = national.strip_prefix(self.international_prefix.as_str()) {
            Some(rest.to_owned())
        } else {
            national
                .strip_prefix(self.national_prefix.as_str())
                .filter(|rest| !rest.is_empty())
                .map(|rest| format!("{}{rest}", self.country_code))
        };
        match (format, e164) {
            (NumberFormat::E164, Some(e)) => e,
            (NumberFormat::E164Plus, Some(e)) => format!("+{e}"),
            _ => national.to_owned(),
        }
    }

    /// The class of a national-form destination. Emergency numbers are
    /// given by the configuration.
    pub fn classify(&self, national: &str, emergency: &[String]) -> NumberClass {
        if emergency.iter().any(|e| e == national) {
            NumberClass::Emergency
        } else if national.starts_with(self.international_prefix.as_str()) {
            NumberClass::International
        } else if national.len() > self.national_prefix.len()
            && national.starts_with(self.national_prefix.as_str())
        {
            NumberClass::National
        } else {
            NumberClass::Other
        }
    }

    /// Every written form of a national-form number (national, E.164
    /// digits, E.164 with plus, without duplicates): list entries may be
    /// kept in any of them.
    pub fn forms(&self, national: &str) -> Vec<String> {
        let mut out = vec![national.to_owned()];
        for f in [NumberFormat::E164, NumberFormat::E164Plus] {
            let s = self.format(national, f);
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

/// The digits of a caller's number as a list keeps it: `+` and anything
/// else that is not a digit dropped.
pub fn digits_only(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jp() -> NumberPlan {
        NumberPlan::default()
    }

    #[test]
    fn every_written_form_becomes_national() {
        let p = jp();
        assert_eq!(p.to_national("0312345678").as_deref(), Some("0312345678"));
        assert_eq!(p.to_national("81312345678").as_deref(), Some("0312345678"));
        assert_eq!(p.to_national("+81312345678").as_deref(), Some("0312345678"));
        assert_eq!(
            p.to_national("+12125550100").as_deref(),
            Some("01012125550100"),
            "another country: international prefix"
        );
        assert_eq!(p.to_national("110").as_deref(), Some("110"));
        assert_eq!(p.to_national("8112").as_deref(), Some("8112"), "too short");
        assert_eq!(p.to_national("03-1234"), None);
        assert_eq!(p.to_national("+"), None);
        assert_eq!(p.to_national(""), None);
    }

    #[test]
    fn national_numbers_are_written_as_each_trunk_wants() {
        let p = jp();
        assert_eq!(p.format("0312345678", NumberFormat::National), "0312345678");
        assert_eq!(p.format("0312345678", NumberFormat::E164), "81312345678");
        assert_eq!(
            p.format("09012345678", NumberFormat::E164Plus),
            "+819012345678"
        );
        assert_eq!(
            p.format("01012125550100", NumberFormat::E164Plus),
            "+12125550100"
        );
        assert_eq!(p.format("119", NumberFormat::E164Plus), "119");
        assert_eq!(p.format("0", NumberFormat::E164), "0");
    }

    #[test]
    fn destinations_are_classified_by_prefix() {
        let p = jp();
        let emergency = vec!["110".to_owned(), "119".to_owned()];
        assert_eq!(p.classify("119", &emergency), NumberClass::Emergency);
        assert_eq!(
            p.classify("0101212555", &emergency),
            NumberClass::International
        );
        assert_eq!(p.classify("0312345678", &emergency), NumberClass::National);
        assert_eq!(p.classify("117", &emergency), NumberClass::Other);
        assert_eq!(p.classify("0", &emergency), NumberClass::Other);
    }

    #[test]
    fn forms_cover_the_three_spellings() {
        let p = jp();
        assert_eq!(
            p.forms("0312345678"),
            ["0312345678", "81312345678", "+81312345678"]
        );
        assert_eq!(p.forms("110"), ["110"]);
        assert_eq!(digits_only("+81-3 1234"), "8131234");
    }

    #[test]
    fn round_trip_through_every_format() {
        let p = jp();
        for n in ["0312345678", "09012345678"] {
            for f in [
                NumberFormat::National,
                NumberFormat::E164,
                NumberFormat::E164Plus,
            ] {
                assert_eq!(
                    p.to_national(&p.format(n, f)).as_deref(),
                    Some(n),
                    "{n} {f:?}"
                );
            }
        }
        // Abroad without a plus is ambiguous; with it, it comes back.
        let abroad = "01012125550100";
        let plus = p.format(abroad, NumberFormat::E164Plus);
        assert_eq!(p.to_national(&plus).as_deref(), Some(abroad));
    }
}
