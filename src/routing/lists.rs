//! The blocklist and the restriction list as a running denwa holds them:
//! in memory, replaced whole when the database's list generation moves
//! (see `server/lists.rs`), so checking a number never touches the disk.

use std::collections::HashSet;

use super::number::{digits_only, NumberPlan};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    blocked: HashSet<String>,
    restricted: HashSet<String>,
}

impl Lists {
    pub fn new(
        blocked: impl IntoIterator<Item = String>,
        restricted: impl IntoIterator<Item = String>,
    ) -> Lists {
        Lists {
            blocked: blocked.into_iter().collect(),
            restricted: restricted.into_iter().collect(),
        }
    }

    pub fn blocked_len(&self) -> usize {
        self.blocked.len()
    }

    pub fn restricted_len(&self) -> usize {
        self.restricted.len()
    }

    /// Whether a caller (as the carrier sent it: national, `81…` or
    /// `+81…`) is blocked, whichever of those forms the entry was kept in.
    pub fn is_blocked(&self, plan: &NumberPlan, caller: &str) -> bool {
        listed(&self.blocked, plan, caller)
    }

    /// Whether a destination (national form) may never be dialled.
    pub fn is_restricted(&self, plan: &NumberPlan, national: &str) -> bool {
        listed(&self.restricted, plan, national)
    }
}

fn listed(set: &HashSet<String>, plan: &NumberPlan, number: &str) -> bool {
    if set.is_empty() {
        return false;
    }
    if set.contains(&digits_only(number)) {
        return true;
    }
    let Some(national) = plan.to_national(number) else {
        return false;
    };
    plan.forms(&national)
        .iter()
        .any(|form| set.contains(&digits_only(form)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_matches_in_any_written_form() {
        let plan = NumberPlan::default();
        let lists = Lists::new(["0312345678".to_owned()], ["819012345678".to_owned()]);
        assert!(lists.is_blocked(&plan, "0312345678"));
        assert!(lists.is_blocked(&plan, "+81312345678"));
        assert!(lists.is_blocked(&plan, "81312345678"));
        assert!(!lists.is_blocked(&plan, "0312345679"));
        assert!(!lists.is_blocked(&plan, "anonymous"));
        assert!(lists.is_restricted(&plan, "09012345678"));
        assert!(!lists.is_restricted(&plan, "0312345678"));
        assert_eq!((lists.blocked_len(), lists.restricted_len()), (1, 1));
        assert!(!Lists::default().is_blocked(&plan, "0312345678"));
    }
}
