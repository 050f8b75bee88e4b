//! Simultaneous calls per number (DID), for the channel limit. Owned by
//! the SIP core: a call takes a channel when it is let through and gives
//! it back when its actor ends.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Channels {
    /// Calls in progress per number.
    in_use: HashMap<String, u32>,
    /// The number each call (by its caller leg's Call-ID) holds.
    held: HashMap<String, String>,
}

impl Channels {
    /// Calls in progress on `number`.
    pub fn in_use(&self, number: &str) -> u32 {
        self.in_use.get(number).copied().unwrap_or(0)
    }

    /// Take a channel of `number` for call `call_id` unless `limit` are in
    /// use; false when the call must be refused.
    pub fn take(&mut self, number: &str, limit: Option<u32>, call_id: &str) -> bool {
        let used = self.in_use(number);
        if limit.is_some_and(|max| used >= max) {
            return false;
        }
        self.in_use
            .insert(number.to_owned(), used.saturating_add(1));
        self.held.insert(call_id.to_owned(), number.to_owned());
        true
    }

    /// The call `call_id` has ended: its channel is free again.
    pub fn release(&mut self, call_id: &str) {
        let Some(number) = self.held.remove(call_id) else {
            return;
        };
        if let Some(n) = self.in_use.get_mut(&number) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_use.remove(&number);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_refuses_the_next_call_until_one_ends() {
        let mut c = Channels::default();
        assert!(c.take("0312345678", Some(2), "a"));
        assert!(c.take("0312345678", Some(2), "b"));
        assert!(!c.take("0312345678", Some(2), "c"), "third call over 2");
        assert!(c.take("0399999999", Some(2), "d"), "another number");
        assert_eq!(c.in_use("0312345678"), 2);
        c.release("a");
        c.release("a");
        c.release("unknown");
        assert_eq!(c.in_use("0312345678"), 1);
        assert!(c.take("0312345678", Some(2), "e"));
        assert!(c.take("0300000000", None, "f"), "no limit");
    }
}
