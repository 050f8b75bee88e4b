//! Where an extension's outside call leaves: a number's outbound prefix
//! dialled first chooses that number (and so its trunk and the caller ID
//! presented); without one the extension's first allowed caller ID, else
//! `[outbound] default_number`. The withhold prefix (`184`) after it hides
//! the caller ID for this call. The extension's permission class and the
//! restriction list are checked; emergency numbers are always let through.

use super::lists::Lists;
use super::number::NumberClass;
use super::Refusal;
use crate::config::{Extension, Number, OutboundClass, Telephony, Trunk};
use crate::store::Disposition;

/// An outside call to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// The number the call leaves on (its caller ID unless withheld).
    pub number: Number,
    pub trunk: Trunk,
    /// The destination, national form.
    pub destination: String,
    pub class: NumberClass,
    /// Present no caller ID.
    pub withheld: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Not an outside number: the usual "no such extension".
    NotExternal,
    Refuse(Refusal),
    Depart(Box<Departure>),
}

/// Decide what `dialled` from `caller` is.
pub fn route(telephony: &Telephony, lists: &Lists, caller: &Extension, dialled: &str) -> Outbound {
    let (chosen, rest) = split_prefix(telephony, dialled);
    let (withheld, rest) = match &telephony.outbound.withhold_prefix {
        Some(p) => match rest.strip_prefix(p.as_str()) {
            Some(after) if !after.is_empty() => (true, after),
            _ => (false, rest),
        },
        None => (false, rest),
    };
    let plan = &telephony.outbound.plan;
    let Some(destination) = plan.to_national(rest) else {
        return Outbound::NotExternal;
    };
    let class = plan.classify(&destination, &telephony.outbound.emergency);
    if chosen.is_none() && !withheld && class == NumberClass::Other {
        return Outbound::NotExternal;
    }
    let emergency = class == NumberClass::Emergency;
    if !emergency {
        if let Some(refusal) = permission(caller.outbound, class) {
            return Outbound::Refuse(refusal);
        }
    }
    let number = match chosen {
        Some(n)
            if emergency
                || caller.caller_ids.is_empty()
                || caller.caller_ids.contains(&n.number) =>
        {
            n
        }
        Some(_) => {
            return Outbound::Refuse(Refusal::new(
                403,
                Disposition::Forbidden,
                "caller ID not allowed for this extension",
            ))
        }
        None => match default_number(telephony, caller) {
            Some(n) => n,
            None => {
                return Outbound::Refuse(Refusal::new(
                    404,
                    Disposition::NotFound,
                    "no outbound route",
                ))
            }
        },
    };
    let Some(trunk) = telephony.trunks.iter().find(|t| t.name == number.trunk) else {
        return Outbound::Refuse(Refusal::new(503, Disposition::Failed, "trunk missing"));
    };
    if !emergency && lists.is_restricted(plan, &destination) {
        return Outbound::Refuse(Refusal {
            announce: true,
            did: Some(number.number.clone()),
            trunk: Some(trunk.name.clone()),
            ..Refusal::new(403, Disposition::Restricted, "destination is restricted")
        });
    }
    Outbound::Depart(Box::new(Departure {
        number: number.clone(),
        trunk: trunk.clone(),
        destination,
        class,
        withheld: withheld && !emergency,
    }))
}

/// The number whose outbound prefix `dialled` starts with (and what
/// follows it), if any.
fn split_prefix<'a>(telephony: &'a Telephony, dialled: &'a str) -> (Option<&'a Number>, &'a str) {
    telephony
        .numbers
        .values()
        .find_map(|n| {
            let rest = dialled.strip_prefix(n.outbound_prefix.as_deref()?)?;
            (!rest.is_empty()).then_some((Some(n), rest))
        })
        .unwrap_or((None, dialled))
}

fn default_number<'a>(telephony: &'a Telephony, caller: &Extension) -> Option<&'a Number> {
    let first = caller
        .caller_ids
        .first()
        .or(telephony.outbound.default_number.as_ref())?;
    telephony.numbers.get(first)
}

/// Why `class` may not be dialled by an extension of class `allowed`.
fn permission(allowed: OutboundClass, class: NumberClass) -> Option<Refusal> {
    let needed = match class {
        NumberClass::International => OutboundClass::International,
        NumberClass::National | NumberClass::Other => OutboundClass::National,
        NumberClass::Emergency => return None,
    };
    if allowed >= needed {
        return None;
    }
    let reason = match allowed {
        OutboundClass::Forbidden => "outbound calls are forbidden for this extension",
        OutboundClass::Internal => "this extension may call internally only",
        _ => "this extension may not call abroad",
    };
    Some(Refusal::new(403, Disposition::Forbidden, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = "\
[outbound]\ndefault_number = \"0311110000\"\n\
[[trunks]]\nname = \"east\"\nkind = \"ip\"\nhost = \"192.0.2.1\"\naddresses = [\"192.0.2.1\"]\n\
[[trunks]]\nname = \"west\"\nkind = \"ip\"\nhost = \"192.0.2.2\"\naddresses = [\"192.0.2.2\"]\ncaller_id_format = \"e164_plus\"\n\
[[numbers]]\nnumber = \"0311110000\"\ntrunk = \"east\"\nroute = \"extension:1001\"\noutbound_prefix = \"71\"\n\
[[numbers]]\nnumber = \"0622220000\"\ntrunk = \"west\"\nroute = \"extension:1001\"\noutbound_prefix = \"72\"\n";

    fn config(extensions: &str) -> crate::config::Config {
        let text = format!("{BASE}{extensions}");
        crate::config::parse(&text, Path::new("t.toml"), Path::new("/")).expect("valid")
    }

    fn ext(extra: &str) -> crate::config::Config {
        config(&format!(
            "[[extensions]]\nnumber = \"1001\"\npassword = \"longenough\"\n{extra}\n"
        ))
    }

    fn depart(c: &crate::config::Config, lists: &Lists, dialled: &str) -> Departure {
        match route(&c.telephony, lists, &c.extensions["1001"], dialled) {
            Outbound::Depart(d) => *d,
            other => panic!("{dialled}: {other:?}"),
        }
    }

    fn refused(c: &crate::config::Config, lists: &Lists, dialled: &str) -> Refusal {
        match route(&c.telephony, lists, &c.extensions["1001"], dialled) {
            Outbound::Refuse(r) => r,
            other => panic!("{dialled}: {other:?}"),
        }
    }

    #[test]
    fn the_prefix_chooses_number_and_trunk() {
        let c = ext("");
        let none = Lists::default();
        let d = depart(&c, &none, "720312345678");
        assert_eq!(
            (d.number.number.as_str(), d.trunk.name.as_str()),
            ("0622220000", "west")
        );
        assert_eq!(d.destination, "0312345678");
        assert_eq!(d.class, NumberClass::National);
        let d = depart(&c, &none, "0312345678");
        assert_eq!(d.trunk.name, "east", "default route");
        let d = depart(&c, &none, "711840312345678");
        assert!(d.withheld);
        assert_eq!(d.destination, "0312345678");
        assert_eq!(
            route(&c.telephony, &none, &c.extensions["1001"], "1099"),
            Outbound::NotExternal
        );
    }

    #[test]
    fn permission_classes_and_emergency_numbers() {
        let none = Lists::default();
        let national = ext("");
        let r = refused(&national, &none, "01012125550100");
        assert_eq!((r.code, r.disposition), (403, Disposition::Forbidden));
        let intl = ext("outbound = \"international\"");
        assert_eq!(
            depart(&intl, &none, "01012125550100").class,
            NumberClass::International
        );
        let internal = ext("outbound = \"internal\"");
        assert_eq!(
            refused(&internal, &none, "0312345678").disposition,
            Disposition::Forbidden
        );
        let forbidden = ext("outbound = \"forbidden\"");
        assert_eq!(
            refused(&forbidden, &none, "720312345678").disposition,
            Disposition::Forbidden
        );
        let d = depart(&forbidden, &none, "119");
        assert_eq!(d.class, NumberClass::Emergency);
        let d = depart(&forbidden, &none, "184110");
        assert!(!d.withheld, "an emergency call never withholds");
    }

    #[test]
    fn caller_ids_limit_the_numbers_an_extension_presents() {
        let none = Lists::default();
        let c = ext("caller_ids = [\"+81622220000\"]");
        assert_eq!(
            depart(&c, &none, "0312345678").number.number,
            "0622220000",
            "first caller ID"
        );
        let r = refused(&c, &none, "710312345678");
        assert_eq!(r.disposition, Disposition::Forbidden);
    }

    #[test]
    fn restricted_destinations_are_refused_with_the_announcement() {
        let c = ext("");
        let lists = Lists::new([], ["0990000000".to_owned(), "110".to_owned()]);
        let r = refused(&c, &lists, "720990000000");
        assert_eq!(
            (r.code, r.disposition, r.announce),
            (403, Disposition::Restricted, true)
        );
        assert_eq!(r.trunk.as_deref(), Some("west"));
        assert_eq!(
            depart(&c, &lists, "110").class,
            NumberClass::Emergency,
            "never restricted"
        );
    }
}
