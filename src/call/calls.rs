//! The directory of live calls and conference room members, for whoever
//! controls calls from outside (the HTTP API, scripts): each answered
//! two-party call registers its Call-ID, caller, callee, answer time,
//! recording state and [`CallControl`] handle, and removes them when it
//! ends; each phone in a room registers a [`MuteSwitch`] under the room and
//! its extension.
//!
//! Owns: only that index, shared behind a short lock (taken when a call is
//! answered, when its recording state changes, when it ends, and per API
//! request; never on the media path). Must not: hold anything that keeps a
//! call alive (a stale handle only fails with "the call has ended"), or
//! carry out commands itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::control::{CallControl, RecordingState};
use crate::media::relay::MuteSwitch;

/// Live calls and room members. Cheap to clone; clones share the index.
pub type Calls = CallDirectory<CallControl, MuteSwitch>;

/// One answered two-party call, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveCall {
    /// The caller leg's Call-ID (the call record's key).
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    /// Unix epoch milliseconds.
    pub answered_at_ms: i64,
    pub recording: RecordingState,
}

/// The index behind [`Calls`], generic over the handles it keeps so it can
/// be tested without calls.
#[derive(Debug)]
pub struct CallDirectory<C, M> {
    inner: Arc<Mutex<Index<C, M>>>,
}

#[derive(Debug)]
struct Index<C, M> {
    calls: BTreeMap<String, (LiveCall, C)>,
    /// Members by room, in the order they joined.
    rooms: HashMap<String, Vec<Member<M>>>,
}

#[derive(Debug)]
struct Member<M> {
    number: String,
    call_id: String,
    switch: M,
}

impl<C, M> Clone for CallDirectory<C, M> {
    fn clone(&self) -> Self {
        CallDirectory {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<C, M> Default for CallDirectory<C, M> {
    fn default() -> Self {
        CallDirectory {
            inner: Arc::new(Mutex::new(Index {
                calls: BTreeMap::new(),
                rooms: HashMap::new(),
            })),
        }
    }
}

impl<C: Clone, M: Clone> CallDirectory<C, M> {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Index<C, M>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An answered call and its control handle.
    pub fn add(&self, call: LiveCall, control: C) {
        self.lock()
            .calls
            .insert(call.call_id.clone(), (call, control));
    }

    /// The call has ended.
    pub fn remove(&self, call_id: &str) {
        self.lock().calls.remove(call_id);
    }

    pub fn set_recording(&self, call_id: &str, state: RecordingState) {
        if let Some((call, _)) = self.lock().calls.get_mut(call_id) {
            call.recording = state;
        }
    }

    /// Every live call, the earliest answered first.
    pub fn list(&self) -> Vec<LiveCall> {
        let mut calls: Vec<LiveCall> = self.lock().calls.values().map(|(c, _)| c.clone()).collect();
        calls.sort_by(|a, b| (a.answered_at_ms, &a.call_id).cmp(&(b.answered_at_ms, &b.call_id)));
        calls
    }

    pub fn get(&self, call_id: &str) -> Option<LiveCall> {
        self.lock().calls.get(call_id).map(|(c, _)| c.clone())
    }

    /// The control handle of a live call.
    pub fn control(&self, call_id: &str) -> Option<C> {
        self.lock().calls.get(call_id).map(|(_, c)| c.clone())
    }

    /// Extension `number` joined `room` in the call `call_id`.
    pub fn join_room(&self, room: &str, number: &str, call_id: &str, switch: M) {
        self.lock()
            .rooms
            .entry(room.to_owned())
            .or_default()
            .push(Member {
                number: number.to_owned(),
                call_id: call_id.to_owned(),
                switch,
            });
    }

    /// The call `call_id` left `room`.
    pub fn leave_room(&self, room: &str, call_id: &str) {
        let mut index = self.lock();
        if let Some(members) = index.rooms.get_mut(room) {
            members.retain(|m| m.call_id != call_id);
            if members.is_empty() {
                index.rooms.remove(room);
            }
        }
    }

    /// The mute switch of extension `number` in `room` (the latest to
    /// join, if it is in twice).
    pub fn member(&self, room: &str, number: &str) -> Option<M> {
        let index = self.lock();
        let members = index.rooms.get(room)?;
        let member = members.iter().rev().find(|m| m.number == number)?;
        Some(member.switch.clone())
    }

    /// How many calls are live.
    pub fn len(&self) -> usize {
        self.lock().calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, at: i64) -> LiveCall {
        LiveCall {
            call_id: id.to_owned(),
            caller: "1001".into(),
            callee: "1002".into(),
            answered_at_ms: at,
            recording: RecordingState::Recording,
        }
    }

    #[test]
    fn calls_are_listed_by_answer_time_until_they_end() {
        let calls: CallDirectory<u32, ()> = CallDirectory::new();
        calls.add(call("b", 20), 2);
        calls.add(call("a", 10), 1);
        calls.add(call("c", 10), 3);
        let ids: Vec<String> = calls.list().into_iter().map(|c| c.call_id).collect();
        assert_eq!(ids, ["a", "c", "b"]);
        assert_eq!(calls.control("b"), Some(2));
        calls.set_recording("b", RecordingState::Paused);
        assert_eq!(
            calls.get("b").map(|c| c.recording),
            Some(RecordingState::Paused)
        );
        let other = calls.clone();
        other.remove("b");
        assert_eq!(calls.control("b"), None, "clones share the index");
        calls.set_recording("b", RecordingState::Off);
        assert_eq!(calls.get("b"), None, "a late update adds nothing");
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn room_members_are_found_by_room_and_extension() {
        let calls: CallDirectory<(), &str> = CallDirectory::new();
        calls.join_room("9201", "1001", "c1", "first");
        calls.join_room("9201", "1002", "c2", "second");
        calls.join_room("9201", "1001", "c3", "again");
        calls.join_room("9202", "1003", "c4", "elsewhere");
        assert_eq!(calls.member("9201", "1001"), Some("again"), "latest join");
        assert_eq!(calls.member("9201", "1003"), None);
        calls.leave_room("9201", "c3");
        assert_eq!(calls.member("9201", "1001"), Some("first"));
        calls.leave_room("9201", "c1");
        calls.leave_room("9201", "c2");
        assert_eq!(calls.member("9201", "1002"), None);
        assert_eq!(calls.member("9202", "1003"), Some("elsewhere"));
        assert!(
            !calls.lock().rooms.contains_key("9201"),
            "empty room forgotten"
        );
    }
}
